"""Slices of any CT input as MONAI data dicts, streamed, for the inference workflow and the series scorer."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .atomic import atomic_write_json
from .series import IMAGE_SUFFIXES, NIFTI_SUFFIXES, iter_ct_slices
from .transforms import DEFAULT_WINDOW_HU

# Per-slice identifiers carried to the predictions file (empty or NaN where a source has none).
ID_KEYS = ("series", "source", "series_instance_uid", "sop_instance_uid", "instance_number", "slice_index", "z")


def _inputs_of(path: Path) -> list[Path]:
    """A folder of 2-D image files is scored file by file; any other path goes to ``iter_ct_slices`` as is."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
        volumes = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES))
        if images or volumes:
            return images + volumes
    return [path]


def _item(array: np.ndarray, info: dict, index: int) -> dict:
    item = {"image": torch.from_numpy(np.ascontiguousarray(array))[None], "name": _slice_name(info, index),
            "series": _series_key(info)}
    for key in ID_KEYS[1:]:  # "series" is derived above; the rest come from the slice's info
        value = info.get(key)
        if key in ("z", "slice_index", "instance_number"):
            item[key] = float("nan") if value is None else float(value)
        else:
            item[key] = "" if value is None else str(value)
    return item


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


def iter_slice_items(inputs: str | os.PathLike | Sequence[str | os.PathLike],
                     window: Sequence[float] = DEFAULT_WINDOW_HU) -> Iterator[dict]:
    """Yield ``{"image": (1, H, W) float32 in [0, 1], "name", <ID_KEYS>}`` for every slice, one at a time.

    Args:
        inputs: one path or several: DICOM folders or files, NIfTI volumes, 2-D image files or folders of them.
        window: (low, high) HU for HU sources (DICOM, NIfTI); image files are taken as already windowed.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    index = 0
    for path in paths:
        for source in _inputs_of(Path(path)):
            # Skipped files and slices are logged with their reasons by scripts.series.
            for array, info in iter_ct_slices(source, window=tuple(window)):
                yield _item(array, info, index)
                index += 1


class SliceStream(torch.utils.data.IterableDataset):
    """Re-iterable stream of slice items (each pass re-reads the inputs; nothing is held in memory)."""

    def __init__(self, inputs: str | os.PathLike | Sequence[str | os.PathLike],
                 window: Sequence[float] = DEFAULT_WINDOW_HU) -> None:
        super().__init__()
        self.inputs = inputs
        self.window = tuple(window)

    def __iter__(self) -> Iterator[dict]:
        return iter_slice_items(self.inputs, self.window)


def summarize_sources(rows: Sequence[dict], threshold: float = 2.0) -> list[dict]:
    """Per series/volume/file: slice count, mean/min/max score and the share of slices scored below ``threshold``."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        key = row.get("series") or row.get("source") or row.get("name")
        groups.setdefault(str(key), []).append(float(row["prediction"]))
    out = []
    for key, scores in groups.items():
        arr = np.asarray(scores)
        out.append({"source": key, "n_slices": int(arr.size), "mean_score": float(arr.mean()),
                    "min_score": float(arr.min()), "max_score": float(arr.max()),
                    f"fraction_below_{threshold:g}": float(np.mean(arr < threshold))})
    return out


def write_summary(predictions_csv: str | os.PathLike, summary_json: str | os.PathLike,
                  threshold: float = 2.0) -> list[dict]:
    """Summarise a per-slice predictions file by series/volume/file, write it as JSON (atomic) and print it."""
    with open(predictions_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{predictions_csv} holds no predictions")
    summary = summarize_sources(rows, threshold)
    atomic_write_json(summary_json, {"threshold": threshold, "sources": summary})
    for entry in summary:
        print(f"{entry['source']}: {entry['n_slices']} slices, mean score {entry['mean_score']:.2f} "
              f"(min {entry['min_score']:.2f}, max {entry['max_score']:.2f}), "
              f"{entry[f'fraction_below_{threshold:g}']:.0%} below {threshold:g}")
    print(f"per-slice scores: {predictions_csv}\nsummary: {summary_json}")
    return summary
