"""Blank UIDs: the SDK's DICOM loader drops every instance whose Study/Series/SOP Instance UID is empty (or whose
SeriesNumber / AcquisitionNumber is present but empty: it parses them with ``int()``).

Some anonymisers blank them (the shared abdomen series is such an export), while ``tfkt-score`` still reads such
files (the bundle falls back to the file meta header and groups by folder, frame of reference, series number and
description). So that the Deploy app scores the same slices, :func:`prepare_input` leaves a complete input as it is
and otherwise copies the input, filling only what is blank:

- SOPInstanceUID / SOPClassUID from the file meta header (the file's own values, as pydicom and the bundle read them);
- empty SeriesNumber / AcquisitionNumber (type 2: present, no value) removed, which loses nothing;
- SeriesInstanceUID / StudyInstanceUID derived deterministically (``2.25.`` UIDs hashed from the bundle's grouping
  key), so a rerun gives the same UIDs. These are new identifiers: the outputs say so (``derived_uids``).

Pixel data is copied as stored (still compressed), never decoded or re-encoded.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

__all__ = ["PreparedInput", "prepare_input"]

_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
_EMPTY_NUMBERS = ("SeriesNumber", "AcquisitionNumber")


@dataclass
class PreparedInput:
    """The folder the app loads, and what was filled in to make it loadable."""

    folder: Path
    source: Path
    derived_uids: dict[str, list[str]] = field(default_factory=dict)  # derived UID -> the keywords it fills

    def original_path(self, path: str | Path) -> Path:
        """The input file a (possibly copied) file came from."""
        path = Path(path)
        return self.source / path.relative_to(self.folder) if path.is_relative_to(self.folder) else path


def _header(path: Path) -> Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None


def _blank(header: Dataset) -> list[str]:
    """What the SDK loader would trip over: blank UIDs, empty numbers."""
    uids = [k for k in _UID_KEYWORDS if not str(header.get(k, "") or "").strip()]
    return uids + [k for k in _EMPTY_NUMBERS if k in header and header[k].value in (None, "")]


def prepare_input(source: Path, workdir: Path) -> PreparedInput:
    """``source`` itself when every DICOM file has its UIDs, else a filled copy under ``workdir``."""
    source = Path(source).absolute()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []
    blank = {p: _blank(h) for p in files if (h := _header(p)) is not None and _blank(h)}
    if not blank:
        return PreparedInput(folder=source, source=source)
    folder = Path(workdir).absolute() / "tfkt_filled_input"
    shutil.rmtree(folder, ignore_errors=True)
    prepared = PreparedInput(folder=folder, source=source)
    for path in files:
        target = folder / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path in blank:
            _write_filled(path, target, source, prepared.derived_uids)
        else:
            shutil.copy2(path, target)
    return prepared


def _write_filled(path: Path, target: Path, source: Path, derived: dict[str, list[str]]) -> None:
    dataset = pydicom.dcmread(path)
    meta = dataset.file_meta
    for keyword in _EMPTY_NUMBERS:
        if keyword in dataset and dataset[keyword].value in (None, ""):
            del dataset[keyword]
    if not str(dataset.get("SOPInstanceUID", "") or ""):
        dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if not str(dataset.get("SOPClassUID", "") or ""):
        dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    for keyword, key in (("StudyInstanceUID", _study_key), ("SeriesInstanceUID", _series_key)):
        if not str(dataset.get(keyword, "") or ""):
            uid = generate_uid(entropy_srcs=[keyword, *key(dataset, path, source)])
            setattr(dataset, keyword, uid)
            derived.setdefault(str(uid), [])
            if keyword not in derived[str(uid)]:
                derived[str(uid)].append(keyword)
    dataset.save_as(target, enforce_file_format=True)


def _series_key(dataset: Dataset, path: Path, source: Path) -> list[str]:
    """The bundle's fallback grouping of a series without UID (scripts.ctio.dicom)."""
    keywords = ("FrameOfReferenceUID", "SeriesNumber", "SeriesDescription")
    return [str(path.parent.relative_to(source)), *(str(dataset.get(k, "") or "") for k in keywords)]


def _study_key(dataset: Dataset, path: Path, source: Path) -> list[str]:
    """Not the input's path: the same files give the same UIDs wherever they are mounted (e.g. in a MAP)."""
    keywords = ("PatientID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber")
    return [str(dataset.get(k, "") or "") for k in keywords]
