"""The files a scoring run leaves per series and across series: scores.csv, summary.json, scores.png, index.csv and
the dose-quality plot. Every write is atomic, so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from scripts.ctio.slices import ACQUISITION_KEYS
from scripts.utils.atomic import atomic_path, atomic_save_png, atomic_write_json
from scripts.utils.scores import SCORE_RANGE

from .summary import SPREAD_KEY

__all__ = [
    "SCORES_COLUMNS",
    "INDEX_COLUMNS",
    "write_series_outputs",
    "write_index",
    "write_table",
    "read_table",
    "finished_series",
    "plot_series_scores",
    "plot_dose_quality",
    "dose_points",
]

# scores.csv: one row per scored slice, in slice order ("file" is the slice's source file).
SCORES_COLUMNS = ("sop_instance_uid", "instance_number", "z", "slice_index", "frame", "file", "name", "score")
INDEX_COLUMNS = (
    "folder",
    "series_description",
    "study_instance_uid",
    "series_instance_uid",
    "n_slices",
    "mean",
    "median",
    "min",
    "p10",
    "threshold",
    "n_below",
    *(key for key in ACQUISITION_KEYS if key != "series_description"),
)
MIN_DOSE_SERIES = 3  # a dose-quality trend needs at least three doses


def write_series_outputs(out_dir: str | os.PathLike, summary: dict, rows: Sequence[dict]) -> Path:
    """Write ``<out_dir>/<summary["folder"]>/`` scores.csv, summary.json and scores.png; return the folder.

    Args:
        out_dir: the run's output folder.
        summary: the series' summary (:func:`scripts.clinical.summary.summarize_series`).
        rows: the series' rows in slice order (:func:`scripts.clinical.summary.group_series`).
    """
    folder = Path(out_dir) / summary["folder"]
    table = [{**row, "file": row.get("source", ""), "score": float(row["prediction"])} for row in rows]
    write_table(folder / "scores.csv", _with_spread(SCORES_COLUMNS, "score", table), table)
    plot_series_scores(rows, summary, folder / "scores.png")
    atomic_write_json(folder / "summary.json", summary)  # last: its presence marks the series finished
    return folder


def finished_series(out_dir: str | os.PathLike) -> dict[str, dict]:
    """Summaries of the series an earlier run into ``out_dir`` finished, by series key (for ``--resume``)."""
    finished = {}
    for path in sorted(Path(out_dir).glob("*/summary.json")):
        summary = json.loads(path.read_text())
        if (path.parent / "scores.csv").is_file() and (path.parent / "scores.png").is_file():
            finished[summary["series"]] = summary
    return finished


def write_index(out_dir: str | os.PathLike, summaries: Sequence[dict]) -> Path:
    """``<out_dir>/index.csv``: one row per series with its identifiers, acquisition fields and summary numbers."""
    table = [{**s.get("acquisition", {}), **s} for s in summaries]
    return write_table(Path(out_dir) / "index.csv", _with_spread(INDEX_COLUMNS, "mean", table), table)


def _with_spread(columns: Sequence[str], after: str, rows: Sequence[dict]) -> tuple[str, ...]:
    """``columns`` with ``score_sd`` after ``after`` when a row has one (``tfkt-score --uncertainty``: the score's SD
    over the slice's 8 flips and rotations, the series' mean of it in the index); the layout is unchanged without."""
    if not any(SPREAD_KEY in row for row in rows):
        return tuple(columns)
    at = columns.index(after) + 1
    return (*columns[:at], SPREAD_KEY, *columns[at:])


def write_table(path: str | os.PathLike, columns: Sequence[str], rows: Sequence[dict]) -> Path:
    """A CSV of ``columns`` (absent numbers as empty cells), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({key: _cell(row.get(key)) for key in columns} for row in rows)
    return Path(path)


def read_table(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV written by :func:`write_table` (an absent file has none)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # instance numbers, slice indices
    return str(value)


def _positions(rows: Sequence[dict]) -> tuple[np.ndarray, str]:
    """Slice positions in mm when every slice has one, else slice numbers."""
    z = np.array([_finite(r.get("z")) for r in rows], dtype=float)
    if np.isfinite(z).all():
        return z, "slice position z (mm)"
    return np.arange(len(rows), dtype=float), "slice number in series order"


def _finite(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_series_scores(rows: Sequence[dict], summary: dict, path: str | os.PathLike) -> Path:
    """Score along z with the threshold line, flagged slices marked in red. Written atomically as PNG."""
    x, xlabel = _positions(rows)
    scores = np.array([float(r["prediction"]) for r in rows])
    flagged = scores < summary["threshold"]
    fig = Figure(figsize=(7.0, 2.8), dpi=100)
    ax = fig.add_subplot()
    ax.plot(x, scores, "-o", markersize=3, linewidth=1, label="slice score")
    ax.axhline(
        summary["threshold"], color="k", linestyle="--", linewidth=1, label=f"threshold {summary['threshold']:g}"
    )
    if flagged.any():
        ax.plot(x[flagged], scores[flagged], "o", color="red", markersize=5, label=f"below ({int(flagged.sum())})")
    low, high = SCORE_RANGE
    ax.set_ylim(min(low, scores.min()) - 0.1, max(high, scores.max()) + 0.1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("predicted quality (0-4)")
    ax.set_title(f"{summary['title']}: mean {summary['mean']:.2f}")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_save_png(fig, path)


def dose_points(summaries: Sequence[dict]) -> list[tuple[float, float, str]]:
    """(CTDIvol, mean score, label) of every series that carries CTDIvol."""
    points = []
    for s in summaries:
        ctdi = s.get("acquisition", {}).get("ctdi_vol")
        if ctdi is not None:
            points.append((float(ctdi), float(s["mean"]), s["title"]))
    return points


def plot_dose_quality(summaries: Sequence[dict], path: str | os.PathLike) -> Path | None:
    """Mean score against CTDIvol, one point per series; None (nothing written) below three such series."""
    points = dose_points(summaries)
    if len(points) < MIN_DOSE_SERIES:
        return None
    ctdi, mean, labels = zip(*sorted(points))
    fig = Figure(figsize=(5.5, 4.0), dpi=100)
    ax = fig.add_subplot()
    ax.plot(ctdi, mean, "o-", linewidth=1)
    for x, y, label in points:
        ax.annotate(label[:24], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("CTDIvol (mGy), series mean")
    ax.set_ylabel("mean predicted quality (0-4)")
    ax.set_title(f"Dose and quality ({len(points)} series)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_save_png(fig, path)
