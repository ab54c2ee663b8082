"""Writers of small synthetic DICOM CT slices for the reading tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"


def write_ct_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    series_uid: str,
    instance: int,
    position: tuple[float, float, float] | None,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    modality: str = "CT",
    study_uid: str = "1.2.3.4",
    description: str = "synthetic",
    extra: dict | None = None,
) -> Path:
    """Write a small uncompressed single-frame DICOM slice (int16, RescaleIntercept -1024, slope 1).

    ``extra``: further attributes by keyword (e.g. ``{"CTDIvol": 12.0, "KVP": 120}``).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = list(position)
        ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = [0.5, 0.5]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.PixelData = pixels.astype("<i2").tobytes()
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def raw_slice(seed: int, shape=(6, 5)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3000, size=shape).astype(np.int16)
