"""Series as units of work for a cluster: found on the driver from headers only, read where a worker runs.

A :class:`SeriesJob` is one series (a DICOM series, a NIfTI volume, or a folder of 2-D image files), keyed as
:func:`scripts.ctio.slices.slice_identity` keys its slices, so resuming, grouping and the output folders agree with
the local engine. Jobs are small and picklable: a DICOM series travels with its parsed, sorted headers, so a worker
decodes its slices without reading the headers again, and a worker never needs the rest of the inputs.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts.ctio.dicom import DicomSeries, Skip, record_skip
from scripts.ctio.dicom_pixels import iter_series_slices
from scripts.ctio.kinds import file_kind, listed_inputs
from scripts.ctio.slices import find_ct_series, finite_slices, input_skip_reason, iter_ct_slices, slice_identity

__all__ = ["SeriesJob", "find_series_jobs", "iter_job_slices"]

Part = DicomSeries | str  # a DICOM series as found, or the path of a NIfTI volume or an image file


@dataclass(frozen=True)
class SeriesJob:
    """One series to score: its key and its parts, in the order the local engine streams them.

    Attributes:
        key: the series key (SeriesInstanceUID, else the folder of a DICOM or image series, else the volume).
        parts: usually one; several when the inputs hold the series in several places (image files of one folder,
            a DICOM series split over two input folders), so a series is always one job, scored by one worker.
    """

    key: str
    parts: tuple[Part, ...]


def find_series_jobs(
    inputs: Sequence[str | os.PathLike], skipped: list[Skip], exclude: Collection[str] = ()
) -> list[SeriesJob]:
    """The series of ``inputs`` as jobs, from headers only (nothing is decoded), in the local engine's order.

    Args:
        inputs: folders and files, as ``tfkt-score`` takes them.
        skipped: receives (path, reason) of every file or input that holds no usable slice, as the local engine
            lists them (each is logged too).
        exclude: series keys not to score (those a resumed run finished).
    """
    parts: dict[str, list[Part]] = {}
    for path in inputs:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
        for source in listed_inputs(path):
            try:
                for key, part in _source_parts(source, skipped):
                    parts.setdefault(key, []).append(part)
            except (ValueError, OSError, EOFError) as err:  # one unusable input, as iter_ct_slices skips it
                record_skip(skipped, source, input_skip_reason(err, source))
    return [SeriesJob(key, tuple(found)) for key, found in parts.items() if key not in set(exclude)]


def _source_parts(source: Path, skipped: list[Skip]) -> Iterator[tuple[str, Part]]:
    kind = file_kind(source) if source.is_file() else "dicom"
    if kind in ("nifti", "image"):
        yield slice_identity({"kind": kind, "source": str(source)}, 0)["series"], str(source)
        return
    for series in find_ct_series(source, skipped):
        uid = series.series_instance_uid
        first = {"kind": "dicom", "source": str(series.slices[0].path), "series_instance_uid": uid}
        yield slice_identity(first, 0)["series"], series


def iter_job_slices(job: SeriesJob, skipped: list[Skip]) -> Iterator[tuple[np.ndarray, dict]]:
    """``(slice, info)`` of a job as :func:`scripts.ctio.slices.iter_ct_slices` yields them, one slice in memory.

    Slices that fail to decode or hold NaN or infinite values are skipped into ``skipped`` with their reasons.
    """
    for part in job.parts:
        if isinstance(part, DicomSeries):
            yield from finite_slices(iter_series_slices(part, skipped), skipped)
        else:
            yield from iter_ct_slices(part, skipped=skipped)
