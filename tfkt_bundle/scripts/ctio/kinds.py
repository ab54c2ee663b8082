"""Which reader a path goes to: the file suffixes of each input kind and the natural file order.

The one place that decides, by name only, whether a file is a NIfTI volume, a 2-D image file or (possibly) DICOM.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "NIFTI_SUFFIXES",
    "TIFF_SUFFIXES",
    "PIL_SUFFIXES",
    "IMAGE_SUFFIXES",
    "DICOM_SUFFIXES",
    "file_kind",
    "natural_key",
    "listed_inputs",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
DICOM_SUFFIXES = ("", ".dcm", ".dicom", ".ima")


def file_kind(path: str | os.PathLike) -> str | None:
    """ "nifti", "image" or "dicom" by file name; None for a name that is none of them (e.g. ``notes.txt``).

    DICOM files are often named by UID ("CT.1.3.12...") or have no suffix: a purely numeric suffix counts as none.
    """
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    suffix = Path(name).suffix
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in DICOM_SUFFIXES or suffix.lstrip(".").isdigit():
        return "dicom"
    return None


def natural_key(path: str | os.PathLike) -> list:
    """Sort key putting "img9" before "img10".

    File-name order is the last-resort slice order, so it must be the human one.
    """
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", str(path))]


def listed_inputs(path: str | os.PathLike) -> list[Path]:
    """The inputs a path stands for: a folder holding 2-D image files or NIfTI volumes -> those files (images first,
    each group in natural order); any other path (a DICOM folder or any single file) -> itself.

    A folder that cannot be listed (e.g. PermissionError) stands for itself too: its reader, which lists it again,
    then skips it or stops with the reason, as for any other unreadable input.
    """
    root = Path(path)
    if root.is_dir():
        try:
            with os.scandir(root) as entries:
                files = sorted((Path(entry.path) for entry in entries if entry.is_file()), key=natural_key)
        except OSError:
            return [root]
        images = [p for p in files if file_kind(p) == "image"]
        volumes = [p for p in files if file_kind(p) == "nifti"]
        if images or volumes:
            return images + volumes
    return [root]
