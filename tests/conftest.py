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
