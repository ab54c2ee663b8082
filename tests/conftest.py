"""Shared test set-up: the bundle root on sys.path (as the MONAI runner does) and the optional ../shared data."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE_ROOT = REPO_ROOT / "tfkt_bundle"
SHARED = REPO_ROOT.parent / "shared"

if str(BUNDLE_ROOT) not in sys.path:
    sys.path.insert(0, str(BUNDLE_ROOT))


def _shared_dir(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: shared test data lives beside the checkout and is optional")
    return path


@pytest.fixture
def shared_ct_series() -> Path:
    """The 20-slice JPEG 2000 abdomen DICOM series (evaluation and loading tests only)."""
    return _shared_dir("data", "ct_series_abdomen")


@pytest.fixture
def shared_ldctiqac_samples() -> Path:
    """Ten real scored LDCTIQAC 2023 test images (evaluation only: never train or tune on them)."""
    return _shared_dir("data", "ldctiqac_samples")


@pytest.fixture
def shared_reference_predictions() -> Path:
    """The published TFKT-V2 predictions on the 300 LDCTIQAC 2023 test images."""
    return _shared_dir("reference", "tfkt_v2_ldctiqac_test_predictions.csv")


@pytest.fixture
def synthetic_folder(tmp_path: Path) -> dict:
    """Series A (3 slices, shuffled names, InstanceNumber against position), series B in a sub-folder, junk files."""
    from pydicom.uid import generate_uid

    from dicom_helpers import raw_slice, write_ct_slice

    uid_a, uid_b = generate_uid(), generate_uid()
    raws = {z: raw_slice(int(z)) for z in (10.0, 0.0, 5.0)}
    # File names and instance numbers deliberately disagree with the position order 0, 5, 10.
    for name, instance, z in (("b_1", 3, 10.0), ("c_2", 1, 0.0), ("a_3", 2, 5.0)):
        write_ct_slice(tmp_path / name, raws[z], series_uid=uid_a, instance=instance, position=(0, 0, z))
    (tmp_path / "sub").mkdir()
    for k in range(2):
        write_ct_slice(
            tmp_path / "sub" / f"s{k}.dcm",
            raw_slice(100 + k),
            series_uid=uid_b,
            instance=k + 1,
            position=(0, 0, 2.0 * k),
            description="second",
        )
    (tmp_path / "notes.txt").write_text("not an image")
    write_ct_slice(
        tmp_path / "mr.dcm", raw_slice(7), series_uid=generate_uid(), instance=1, position=(0, 0, 0), modality="MR"
    )
    return {"root": tmp_path, "uid_a": uid_a, "uid_b": uid_b, "raws": raws}


def _noise_image(rng, score: float, size: int):
    """A [0, 1] slice whose noise grows as the score falls: something a tiny network can learn quickly."""
    import numpy as np

    base = 0.3 + 0.4 * np.outer(np.hanning(size), np.hanning(size))
    sigma = 0.02 + 0.1 * (4.0 - score) / 4.0
    return np.clip(base + rng.normal(0, sigma, (size, size)), 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_ct_data(tmp_path_factory) -> dict:
    """LDCTIQAC-layout train (24 images) and test (10 images) sets of 32x32 synthetic slices."""
    import json

    import numpy as np
    import tifffile

    root = tmp_path_factory.mktemp("tiny_ct")
    rng = np.random.default_rng(0)
    train, test = root / "train", root / "test"
    (train / "image").mkdir(parents=True)
    test.mkdir()
    scores = {}
    for i in range(24):
        score = round(float(i % 21) * 0.2, 1)
        tifffile.imwrite(train / "image" / f"{i:04d}.tif", _noise_image(rng, score, 32))
        scores[f"{i:04d}.tif"] = score
    (train / "train.json").write_text(json.dumps(scores))
    test_scores = {}
    for i in range(10):
        score = round(i * 0.4, 1)
        tifffile.imwrite(test / f"test{i:03d}.tiff", _noise_image(rng, score, 32))
        test_scores[f"test{i:03d}.tiff"] = score
    (test / "test.json").write_text(json.dumps(test_scores))
    return {"train": train, "test": test}


@pytest.fixture(scope="session")
def tiny_natural_data(tmp_path_factory) -> Path:
    """A generic-CSV natural IQA set: 20 RGB PNGs of 40x40 and scores.csv (image,score on 0-4, group = picture)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny_natural")
    rng = np.random.default_rng(1)
    lines = ["image,score,group"]
    for i in range(20):
        score = round(float(i % 5), 1)
        grey = _noise_image(rng, score, 40)
        Image.fromarray((np.stack([grey] * 3, -1) * 255).astype(np.uint8)).save(root / f"img{i:02d}.png")
        lines.append(f"img{i:02d}.png,{score},pic{i // 5}")
    (root / "scores.csv").write_text("\n".join(lines) + "\n")
    return root / "scores.csv"
