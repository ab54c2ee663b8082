"""Fixtures of the Deploy app tests (run in .venv-deploy: `make test-deploy`): a tiny checkpoint, a synthetic CT
series with files that are not CT beside it, a study with a scout series and a NaN slice, and the optional shared
J2K series."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

APP_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = APP_DIR.parents[1]
SHARED_SERIES = REPO_ROOT.parent / "shared" / "data" / "ct_series_abdomen"
SIZE, N_SLICES = 64, 6

sys.path.insert(0, str(REPO_ROOT / "tests"))  # the repository's test helpers serve the app's tests too
from dicom_helpers import write_ct_slice  # noqa: E402
from model_helpers import noise_scorer_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny network taught for a second to score noise down (tests/model_helpers.py), so scores vary."""
    return noise_scorer_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", SIZE)


def write_slice(
    path: Path, hu: np.ndarray, *, series_uid: str, instance: int, z: float, modality: str = "CT", **extra
) -> str:
    """An uncompressed slice of HU values by the repository's writer (tests/dicom_helpers.py); its SOP UID.

    ``extra``: further attributes by keyword (e.g. ``ImageType``, ``SeriesNumber``).
    """
    extra = {
        "PatientID": "TFKT-TEST", "PatientName": "Test^Phantom", "SeriesNumber": 3 if modality == "CT" else 4, **extra,
    }  # fmt: skip
    write_ct_slice(
        path, np.clip(np.round(hu) + 1024, 0, 4095), series_uid=series_uid, instance=instance, position=(0.0, 0.0, z),
        modality=modality, description=f"synthetic {modality}", extra=extra,
    )  # fmt: skip
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def phantom(rng: np.random.Generator, noise: float) -> np.ndarray:
    """A water disc in air, in HU, with Gaussian noise of ``noise`` HU."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    body = np.where((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2, 40.0, -1000.0)
    return body + rng.normal(0, noise, (SIZE, SIZE))


def write_float_slice(path: Path, hu: np.ndarray) -> None:
    """Turn a written slice into one of 32-bit Float Pixel Data holding ``hu`` (NaN allowed), same rescale."""
    dataset = pydicom.dcmread(path)
    del dataset.PixelData, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation
    dataset.BitsAllocated = 32
    dataset.FloatPixelData = (hu - float(dataset.RescaleIntercept)).astype("<f4").tobytes()
    dataset.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="session")
def scout_study(tmp_path_factory) -> dict:
    """One study, two CT series: an axial series of 4 slices (the third one's pixels partly NaN) and a scout series
    (ImageType LOCALIZER) of 2 images, in one folder."""
    root = tmp_path_factory.mktemp("scout_study")
    rng, axial_uid, scout_uid = np.random.default_rng(1), generate_uid(), generate_uid()
    sop_uids = []
    for k in range(4):
        path = root / f"ax{k + 1}.dcm"
        hu = phantom(rng, 10.0 + 30.0 * k)
        sop_uids.append(write_slice(path, hu, series_uid=axial_uid, instance=k + 1, z=2.0 * k))
        if k == 2:
            hu = phantom(rng, 10.0)
            hu[10:20, 10:20] = np.nan
            write_float_slice(path, hu)
    localizer = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scouts = [root / f"scout{k + 1}.dcm" for k in range(2)]
    for k, path in enumerate(scouts):
        write_slice(
            path,
            phantom(rng, 5.0),
            series_uid=scout_uid,
            instance=k + 1,
            z=float(k),
            ImageType=localizer,
            SeriesNumber=1,
        )
    uids = {"axial_uid": axial_uid, "scout_uid": scout_uid, "sop_uids": sop_uids}
    return {"root": root, **uids, "nan_slice": root / "ax3.dcm", "scouts": scouts}


@pytest.fixture(scope="session")
def synthetic_study(tmp_path_factory) -> dict:
    """A 6-slice CT phantom series (noise growing along z, files named against slice order), an MR slice and a
    text file beside it."""
    root = tmp_path_factory.mktemp("study")
    rng, uid = np.random.default_rng(0), generate_uid()
    sop_uids = []
    for k in range(N_SLICES):
        hu = phantom(rng, 5.0 + 40.0 * k)
        sop_uids.append(write_slice(root / f"im{N_SLICES - k:02d}.dcm", hu, series_uid=uid, instance=k + 1, z=2.0 * k))
    write_slice(root / "mr.dcm", phantom(rng, 0.0), series_uid=generate_uid(), instance=1, z=0.0, modality="MR")
    (root / "notes.txt").write_text("not DICOM")
    return {"root": root, "series_uid": uid, "sop_uids": sop_uids}


@pytest.fixture(scope="session")
def shared_series() -> Path:
    if not SHARED_SERIES.is_dir():
        pytest.skip(f"{SHARED_SERIES} is absent: the shared data lives beside the checkout and is optional")
    return SHARED_SERIES
