"""One entry point for every CT input: slices of DICOM series, NIfTI volumes and 2-D image files, streamed.

:func:`iter_ct_slices` yields ``(slice, info)`` one slice in memory at a time; :func:`slice_identity` turns an
``info`` into the identifiers that every per-slice output carries (:data:`SLICE_ID_KEYS`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .dicom import Skip, find_dicom_series, iter_series_slices
from .images import read_image_file
from .kinds import file_kind, listed_inputs
from .nifti import iter_nifti_slices
from .window import apply_hu_window

__all__ = ["SLICE_ID_KEYS", "iter_ct_slices", "slice_identity"]

# Per-slice identifiers carried to every predictions file (empty or NaN where a source has none).
SLICE_ID_KEYS = ("series", "source", "series_instance_uid", "sop_instance_uid", "instance_number", "slice_index", "z")
_NUMERIC_ID_KEYS = ("instance_number", "slice_index", "z")

Inputs = str | os.PathLike | Sequence[str | os.PathLike]


def iter_ct_slices(
    inputs: Inputs, hu_window: Sequence[float] | None = None, skipped: list[Skip] | None = None
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(slice, info)`` for every slice of one or several CT inputs, one slice in memory at a time.

    Dispatch (:func:`scripts.ctio.kinds.listed_inputs` and :func:`~scripts.ctio.kinds.file_kind`): a folder of 2-D
    image files or NIfTI volumes -> each file; any other folder -> every CT DICOM series in it (recursively), series
    after series; ``.nii``/``.nii.gz`` -> :func:`~scripts.ctio.nifti.iter_nifti_slices`; ``.tif``/``.png``/... -> one
    already-windowed slice; any other file -> a single DICOM file (each frame if multi-frame).

    Args:
        inputs: one path or several: folders, DICOM files, NIfTI files or 2-D image files.
        hu_window: (low, high) HU to window HU sources to [0, 1]; None keeps HU. Image files are never re-windowed.
        skipped: if given, receives (path, reason) for every skipped file or slice (all are also logged).

    Yields:
        (slice, info): float32 (H, W); ``info["is_hu"]`` says whether the values are HU (True) or in [0, 1] (False);
        ``info["kind"]`` is "dicom", "nifti" or "image"; see the per-source readers for the rest.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a DICOM input holds no usable CT slice (the reasons are in the message).
        DecoderMissingError: DICOM pixel data needs a decoder plugin that is not installed.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
        for source in listed_inputs(path):
            for array, info in _iter_source(source, skipped):
                if hu_window is not None and info["is_hu"]:
                    array, info = apply_hu_window(array, hu_window), {**info, "is_hu": False}
                yield array, info


def _iter_source(source: Path, skipped: list[Skip] | None) -> Iterator[tuple[np.ndarray, dict]]:
    kind = file_kind(source) if source.is_file() else "dicom"
    if kind == "nifti":
        yield from iter_nifti_slices(source)
    elif kind == "image":
        yield read_image_file(source), {"kind": "image", "source": str(source), "slice_index": 0, "is_hu": False}
    else:
        yield from _iter_dicom(source, skipped)


def _iter_dicom(source: Path, skipped: list[Skip] | None) -> Iterator[tuple[np.ndarray, dict]]:
    found = find_dicom_series(source)
    if skipped is not None:
        skipped.extend(found.skipped)
    if not found:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in found.skipped[:5])
        more = f" (+{len(found.skipped) - 5} more)" if len(found.skipped) > 5 else ""
        raise ValueError(f"{source}: no CT DICOM slices found. {reasons}{more}")
    for series in found:
        yield from iter_series_slices(series, skipped)


def slice_identity(info: dict, index: int) -> dict:
    """``name`` and the :data:`SLICE_ID_KEYS` of a slice: strings, or floats (NaN when absent) for the numeric ones.

    Args:
        info: the slice's ``info`` from :func:`iter_ct_slices`.
        index: the slice's position in the whole stream (names slices that have no identifier of their own).
    """
    identity = {"name": _slice_name(info, index), "series": _series_key(info)}
    for key in SLICE_ID_KEYS[1:]:  # "series" is derived above; the rest come from the slice's info
        value = info.get(key)
        if key in _NUMERIC_ID_KEYS:
            identity[key] = float("nan") if value is None else float(value)
        else:
            identity[key] = "" if value is None else str(value)
    return identity


def _series_key(info: dict) -> str:
    """What a slice belongs to: its SeriesInstanceUID, else its folder (DICOM) or file (volumes, images)."""
    if info.get("series_instance_uid"):
        return str(info["series_instance_uid"])
    source = Path(info.get("source", ""))
    return str(source.parent) if info.get("kind") == "dicom" else str(source)


def _slice_name(info: dict, index: int) -> str:
    if info.get("kind") == "image":
        return Path(info["source"]).name
    uid = info.get("sop_instance_uid")
    if uid:
        return str(uid)
    return f"{Path(info.get('source', 'slice')).name}#{info.get('slice_index', index)}"
