"""Per-series summaries of slice scores: what a physicist reads first after scoring an exam.

A summary is a JSON-ready dict: identifiers, score statistics, the slices below the threshold, the worst slices,
the slices' mean score SD when they were scored over their flips and rotations (``score_sd``), and the
acquisition fields the slices carried (dose fields averaged over the series, the rest from its first slice).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from hashlib import sha1
from pathlib import Path

import numpy as np

from scripts.ctio.kinds import natural_key
from scripts.ctio.slices import ACQUISITION_KEYS
from scripts.utils.numbers import finite_float

__all__ = ["SLICE_REF_KEYS", "SPREAD_KEY", "group_series", "summarize_series", "series_folder"]

# What identifies a listed slice (below threshold, worst): enough to find it in a viewer and to read it again.
SLICE_REF_KEYS = ("name", "sop_instance_uid", "instance_number", "z", "slice_index", "source", "frame")
SPREAD_KEY = "score_sd"  # a slice's score SD over its 8 flips and rotations, when scored with them
_AVERAGED = ("exposure_mas", "ctdi_vol")  # vary slice by slice under tube-current modulation


def group_series(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Rows by series (``series``, else ``source``, else ``name``), in order of first appearance, each series in
    slice order (``slice_index``, then natural order of ``name``), whatever order the rows came in."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        key = row.get("series") or row.get("source") or row.get("name")
        groups.setdefault(str(key), []).append(row)
    return {key: sorted(group, key=_slice_order) for key, group in groups.items()}


def _slice_order(row: dict) -> tuple:
    index = finite_float(row.get("slice_index"))
    return (index if index is not None else math.inf, natural_key(str(row.get("name", ""))))


def summarize_series(rows: Sequence[dict], threshold: float = 2.0, n_worst: int = 5) -> list[dict]:
    """One summary per series (see the module docstring), in order of first appearance.

    Args:
        rows: one dict per slice with ``prediction`` and the per-slice keys of ``scripts.ctio.slices.SLICE_KEYS``
            (missing keys are left out of the summary).
        threshold: score below which a slice is flagged as low quality.
        n_worst: how many of the lowest-scored slices to list.
    """
    return [_summary(key, group, float(threshold), n_worst) for key, group in group_series(rows).items()]


def _summary(key: str, rows: list[dict], threshold: float, n_worst: int) -> dict:
    scores = np.array([float(r["prediction"]) for r in rows])
    first = rows[0]
    below = [r for r in rows if float(r["prediction"]) < threshold]
    worst = sorted(rows, key=lambda r: float(r["prediction"]))[:n_worst]
    description = str(first.get("series_description") or "")
    return {
        "series": key,
        "title": description or _folder_or_file_name(key, str(first.get("source") or "")),
        "folder": series_folder(key, description),
        "study_instance_uid": str(first.get("study_instance_uid") or ""),
        "series_instance_uid": str(first.get("series_instance_uid") or ""),
        "n_slices": int(scores.size),
        "mean": float(scores.mean()),
        **_mean_spread(rows),
        "median": float(np.median(scores)),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "p10": float(np.percentile(scores, 10)),
        "threshold": threshold,
        "n_below": len(below),
        "below": [_slice_ref(r) for r in below],
        "worst": [_slice_ref(r) for r in worst],
        "acquisition": _acquisition(rows),
    }


def _mean_spread(rows: list[dict]) -> dict:
    """``score_sd``, the mean of the slices' score SDs, when every slice has one (``tfkt-score --uncertainty``)."""
    spreads = [finite_float(r.get(SPREAD_KEY)) for r in rows]
    if not spreads or any(v is None for v in spreads):
        return {}
    return {SPREAD_KEY: float(np.mean(spreads))}


def _slice_ref(row: dict) -> dict:
    ref = {key: _plain(row[key]) for key in SLICE_REF_KEYS if key in row}
    spread = finite_float(row.get(SPREAD_KEY))
    return {**ref, "score": float(row["prediction"]), **({SPREAD_KEY: spread} if spread is not None else {})}


def _acquisition(rows: list[dict]) -> dict:
    out = {}
    for key in ACQUISITION_KEYS:
        if key in _AVERAGED:
            values = [v for v in (finite_float(r.get(key)) for r in rows) if v is not None]
            value = float(np.mean(values)) if values else None
        else:
            value = _plain(rows[0].get(key))
        if value not in (None, ""):
            out[key] = value
    return out


def _plain(value):
    """JSON-ready: NaN (an absent number) becomes None, integral floats stay floats."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.generic,)):
        return _plain(value.item())
    if value is not None and not isinstance(value, (str, int, float, bool)):
        return str(value)
    return value


def _folder_or_file_name(key: str, source: str) -> str:
    """A volume is named by its file; a DICOM series or image folder by the folder holding its first slice."""
    if not source or source == key:
        return Path(key).name or key
    return Path(source).parent.name or key


def series_folder(key: str, description: str = "") -> str:
    """A readable folder name that is unique per series: its description (else the key's last part) and a hash."""
    readable = description or Path(key).name or key
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", readable).strip("._-")[:48] or "series"
    return f"{slug}_{sha1(key.encode()).hexdigest()[:8]}"
