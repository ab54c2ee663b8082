"""Fixtures of the Deploy app tests (run in .venv-deploy: `make test-deploy`): a tiny checkpoint, a synthetic CT
series with files that are not CT beside it, and the optional shared J2K series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scripts.nets.networks import create_network

APP_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = APP_DIR.parents[1]
SHARED_SERIES = REPO_ROOT.parent / "shared" / "data" / "ct_series_abdomen"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SIZE, N_SLICES = 64, 6


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny network taught for a second to score noise down (as tests/test_score.py), so scores vary."""
    torch.manual_seed(0)
    network, rng = create_network("hybrid_tiny"), np.random.default_rng(0)
    optimizer = torch.optim.Adam(network.parameters(), 3e-3)
    for _ in range(60):
        sd = rng.uniform(0, 0.2, 8)
        noisy = np.clip(0.5 + rng.normal(0, 1, (8, 1, SIZE, SIZE)) * sd[:, None, None, None], 0, 1)
        loss = torch.nn.functional.mse_loss(network(torch.from_numpy(noisy).float()).ravel(), torch.tensor(4 - 20 * sd))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(network.state_dict(), path)
    return path


def write_slice(path: Path, hu: np.ndarray, *, series_uid: str, instance: int, z: float, modality: str = "CT") -> str:
    """An uncompressed single-frame slice as the repo's tests write them (tests/dicom_helpers.py); its SOP UID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName = modality, "TFKT-TEST", "Test^Phantom"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = "1.2.3.4", series_uid, 3 if modality == "CT" else 4
    ds.SeriesDescription, ds.InstanceNumber = f"synthetic {modality}", instance
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, z], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.Rows, ds.Columns = [0.5, 0.5], *hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.PixelData = np.clip(np.round(hu) + 1024, 0, 4095).astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


@pytest.fixture(scope="session")
def synthetic_study(tmp_path_factory) -> dict:
    """A 6-slice CT phantom series (noise growing along z, files named against slice order), an MR slice and a
    text file beside it."""
    root = tmp_path_factory.mktemp("study")
    rng, uid = np.random.default_rng(0), generate_uid()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    body = np.where((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2, 40.0, -1000.0)
    sop_uids = []
    for k in range(N_SLICES):
        hu = body + rng.normal(0, 5.0 + 40.0 * k, (SIZE, SIZE))
        sop_uids.append(write_slice(root / f"im{N_SLICES - k:02d}.dcm", hu, series_uid=uid, instance=k + 1, z=2.0 * k))
    write_slice(root / "mr.dcm", body, series_uid=generate_uid(), instance=1, z=0.0, modality="MR")
    (root / "notes.txt").write_text("not DICOM")
    return {"root": root, "series_uid": uid, "sop_uids": sop_uids}


@pytest.fixture(scope="session")
def shared_series() -> Path:
    if not SHARED_SERIES.is_dir():
        pytest.skip(f"{SHARED_SERIES} is absent: the shared data lives beside the checkout and is optional")
    return SHARED_SERIES
