"""One entry point for every CT input: slices of DICOM series, NIfTI volumes and 2-D image files, streamed.

:func:`iter_ct_slices` yields ``(slice, info)`` one slice in memory at a time; :func:`slice_identity` turns an
``info`` into the identifiers that every per-slice output carries (:data:`SLICE_ID_KEYS`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

import numpy as np

from .dicom import (
    ACQUISITION_FIELDS,
    NUMERIC_ACQUISITION_FIELDS,
    DicomSeriesList,
    Skip,
    find_dicom_series,
    record_skip,
    unreadable_reason,
)
from .dicom_pixels import iter_series_slices, read_dicom_hu
from .images import read_image_file
from .kinds import file_kind, listed_inputs
from .nifti import iter_nifti_slices
from .window import apply_hu_window

__all__ = [
    "ACQUISITION_KEYS", "SLICE_ID_KEYS", "SLICE_KEYS", "find_ct_series", "finite_slices", "input_skip_reason",
    "iter_ct_slices", "read_ct_slice", "slice_identity",
]  # fmt: skip

# Per-slice identifiers carried to every predictions file (empty or NaN where a source has none).
SLICE_ID_KEYS = (
    "series",
    "source",
    "frame",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "instance_number",
    "slice_index",
    "series_slices",
    "z",
)
# What the series was acquired and reconstructed with (DICOM only but pixel spacing; empty or NaN elsewhere).
ACQUISITION_KEYS = ("series_description", "pixel_spacing", *ACQUISITION_FIELDS)
SLICE_KEYS = SLICE_ID_KEYS + ACQUISITION_KEYS
_NUMERIC_KEYS = ("frame", "instance_number", "slice_index", "series_slices", "z", *NUMERIC_ACQUISITION_FIELDS)

Inputs = str | os.PathLike | Sequence[str | os.PathLike]


def iter_ct_slices(
    inputs: Inputs,
    hu_window: Sequence[float] | None = None,
    skipped: list[Skip] | None = None,
    shard: tuple[int, int] = (0, 1),
    exclude_series: Collection[str] = (),
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(slice, info)`` for every slice of one or several CT inputs, one slice in memory at a time.

    Dispatch (:func:`scripts.ctio.kinds.listed_inputs` and :func:`~scripts.ctio.kinds.file_kind`): a folder of 2-D
    image files or NIfTI volumes -> each file; any other folder -> every CT DICOM series in it (recursively), series
    after series; ``.nii``/``.nii.gz`` -> :func:`~scripts.ctio.nifti.iter_nifti_slices`; ``.tif``/``.png``/... -> one
    already-windowed slice; any other file -> a single DICOM file (each frame if multi-frame).

    Args:
        inputs: one path or several: folders, DICOM files, NIfTI files or 2-D image files.
        hu_window: (low, high) HU to window HU sources to [0, 1]; None keeps HU. Image files are never re-windowed.
        skipped: if given, receives (path, reason) for every skipped file, folder or slice (all are also logged),
            and an input that yields no usable slice (an empty folder, a folder without CT, a folder or file that
            cannot be read, an image that is not one 2-D slice, a damaged volume) is skipped with its reason instead
            of stopping the stream.
        shard: (k, n): decode and yield only the k-th of n disjoint shares of the slices, so that n parallel readers
            (DataLoader workers) together yield every slice once. Headers are still read by each reader.
        exclude_series: series keys (``slice_identity(info)["series"]``) not to read at all, e.g. those a resumed
            run has finished; their slices are neither decoded nor yielded.

    Yields:
        (slice, info): float32 (H, W); ``info["is_hu"]`` says whether the values are HU (True) or in [0, 1] (False);
        ``info["kind"]`` is "dicom", "nifti" or "image"; see the per-source readers for the rest.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: without ``skipped``, an input holds no usable slice (the reasons are in the message).
        OSError: without ``skipped``, an input cannot be read (e.g. PermissionError).
        DecoderMissingError: DICOM pixel data needs a decoder plugin that is not installed.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    ordinals = itertools.count()  # of the series/volume/file: offsets each unit's shares so one-slice files spread
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
        for source in listed_inputs(path):
            try:
                for array, info in _source_slices(source, skipped, shard, ordinals, set(exclude_series)):
                    if hu_window is not None and info["is_hu"]:
                        array, info = apply_hu_window(array, hu_window), {**info, "is_hu": False}
                    yield array, info
            except (ValueError, OSError, EOFError) as err:  # one unusable input; decoder and other errors stop the job
                if skipped is None and isinstance(err, EOFError):  # a one-line error, as for the others
                    raise ValueError(f"{source}: {input_skip_reason(err, source)}") from err
                if skipped is None:
                    raise
                record_skip(skipped, source, input_skip_reason(err, source), log=shard[0] == 0)


def input_skip_reason(err: Exception, source: str | os.PathLike) -> str:
    """Why a whole input is skipped, without repeating its path (the list of skips names it)."""
    if isinstance(err, OSError):
        return unreadable_reason(err)
    if isinstance(err, EOFError):  # gzip's, on a .nii.gz cut short
        return f"file cut short ({err})"
    return str(err).removeprefix(f"{source}: ")


def _source_slices(
    source: Path, skipped: list[Skip] | None, shard: tuple[int, int], ordinals: Iterator[int], exclude: set[str]
) -> Iterator[tuple[np.ndarray, dict]]:
    share, shares = shard
    for key, unit in _source_units(source, skipped, log=share == 0):
        if key in exclude:
            continue
        first = next(ordinals)
        keep = None if shares == 1 else (lambda k, first=first: (first + k) % shares == share)
        yield from finite_slices(unit(keep), skipped)


def finite_slices(
    slices: Iterator[tuple[np.ndarray, dict]], skipped: list[Skip] | None
) -> Iterator[tuple[np.ndarray, dict]]:
    """``slices`` less those with NaN or infinite pixels: each recorded in ``skipped``, or refused without it."""
    for array, info in slices:
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if not bad:
            yield array, info
            continue
        where = Path(f"{info['source']}#{info.get('frame') or info['slice_index']}")
        if skipped is None:
            raise ValueError(f"{where}: {bad} NaN or infinite pixel values")
        record_skip(skipped, where, f"{bad} NaN or infinite pixel values")


def read_ct_slice(source: str | os.PathLike, slice_index: int = 0, frame: int | None = None) -> tuple[np.ndarray, bool]:
    """Read one slice again from what a per-slice output names: ``source``, ``slice_index`` and ``frame``.

    Returns:
        (slice, is_hu): float32 (H, W), in HU (DICOM, NIfTI) or [0, 1] (image files).
    """
    path = Path(source)
    kind = file_kind(path)
    if kind == "image":
        return read_image_file(path, grayscale_only=True), False
    if kind == "nifti":
        array, _ = next(iter_nifti_slices(path, keep=lambda k: k == slice_index))
        return array, True
    return read_dicom_hu(path, frame), True


# A unit is one series, volume or image file: called with a ``keep(index)`` filter (or None), it yields its slices.
Unit = Callable[[Callable[[int], bool] | None], Iterator[tuple[np.ndarray, dict]]]


def _source_units(source: Path, skipped: list[Skip] | None, log: bool) -> Iterator[tuple[str, Unit]]:
    """(series key, unit) pairs; the key is the one :func:`slice_identity` gives the unit's slices."""
    kind = file_kind(source) if source.is_file() else "dicom"
    if kind == "nifti":
        yield _series_key({"kind": kind, "source": source}), lambda keep: iter_nifti_slices(source, keep)
    elif kind == "image":
        yield _series_key({"kind": kind, "source": source}), lambda keep: _image_slice(source, keep)
    else:
        for series in find_ct_series(source, skipped, log):
            first = {"kind": kind, "source": series.slices[0].path, "series_instance_uid": series.series_instance_uid}
            yield _series_key(first), lambda keep, series=series: iter_series_slices(series, skipped, keep)


def _image_slice(source: Path, keep: Callable[[int], bool] | None) -> Iterator[tuple[np.ndarray, dict]]:
    if keep is not None and not keep(0):
        return
    array = read_image_file(source, grayscale_only=True)
    yield array, {"kind": "image", "source": str(source), "slice_index": 0, "is_hu": False}


def find_ct_series(source: Path, skipped: list[Skip] | None, log: bool = True) -> DicomSeriesList:
    """The CT series under ``source``; with ``skipped``, the files that are not listed there, else refused."""
    found = find_dicom_series(source, log=log)
    if skipped is not None and log:  # every parallel reader reads the headers; the first one lists their skips
        skipped.extend(found.skipped)
    if not found and skipped is not None:  # each file's reason is listed already
        raise ValueError(f"no CT DICOM slices found ({len(found.skipped)} files, each skipped)")
    if not found:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in found.skipped[:5])
        more = f" (+{len(found.skipped) - 5} more)" if len(found.skipped) > 5 else ""
        raise ValueError(f"{source}: no CT DICOM slices found. {reasons}{more}")
    return found


def slice_identity(info: dict, index: int) -> dict:
    """``name`` and the :data:`SLICE_KEYS` of a slice: strings, or floats (NaN when absent) for the numeric ones.

    Fixed keys and types, so that slices of any kind batch together.

    Args:
        info: the slice's ``info`` from :func:`iter_ct_slices`.
        index: the slice's position in the whole stream (names slices that have no identifier of their own).
    """
    identity = {"name": _slice_name(info, index), "series": _series_key(info)}
    info = {**info, "pixel_spacing": _spacing_text(info.get("pixel_spacing"))}
    for key in SLICE_KEYS[1:]:  # "series" is derived above; the rest come from the slice's info
        value = info.get(key)
        if key in _NUMERIC_KEYS:
            identity[key] = float("nan") if value is None else float(value)
        else:
            identity[key] = "" if value is None else str(value)
    return identity


def _spacing_text(spacing) -> str | None:
    return None if spacing is None else " x ".join(f"{float(v):g}" for v in spacing)


def _series_key(info: dict) -> str:
    """What a slice belongs to: its SeriesInstanceUID, else its folder (DICOM, image files) or file (volumes)."""
    if info.get("series_instance_uid"):
        return str(info["series_instance_uid"])
    source = Path(info.get("source", ""))
    return str(source) if info.get("kind") == "nifti" else str(source.parent)


def _slice_name(info: dict, index: int) -> str:
    if info.get("kind") == "image":
        return Path(info["source"]).name
    uid = info.get("sop_instance_uid")
    if uid:
        return str(uid)
    return f"{Path(info.get('source', 'slice')).name}#{info.get('slice_index', index)}"
