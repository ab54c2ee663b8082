"""Per-series summaries of slice scores: what a physicist reads first after scoring an exam."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events

from scripts.utils.atomic import atomic_write_json

__all__ = ["summarize_series", "SeriesSummary"]


def summarize_series(rows: Sequence[dict], threshold: float = 2.0) -> list[dict]:
    """Per series/volume/file: slice count, mean/min/max score and the share of slices scored below ``threshold``.

    Args:
        rows: one dict per slice with ``prediction`` and ``series`` (else ``source``, else ``name``) to group by.
        threshold: score below which a slice counts as low quality.

    Returns:
        One dict per group, in order of first appearance.
    """
    groups: dict[str, list[float]] = {}
    for row in rows:
        key = row.get("series") or row.get("source") or row.get("name")
        groups.setdefault(str(key), []).append(float(row["prediction"]))
    out = []
    for key, scores in groups.items():
        arr = np.asarray(scores)
        out.append(
            {
                "source": key,
                "n_slices": int(arr.size),
                "mean_score": float(arr.mean()),
                "min_score": float(arr.min()),
                "max_score": float(arr.max()),
                f"fraction_below_{threshold:g}": float(np.mean(arr < threshold)),
            }
        )
    return out


class SeriesSummary:
    """At the end of a scoring run, summarise the rows a :class:`scripts.evaluation.handlers.PredictionReport`
    collected, write ``summary.json`` (atomic) and print one line per series.

    Attach it after the report (handlers run in the order they are attached).

    Args:
        report: the run's prediction report (its ``rows`` are read; nothing is read back from disk).
        output_dir: folder of ``summary.json``.
        threshold: score below which a slice counts as low quality.
    """

    def __init__(self, report, output_dir: str, threshold: float = 2.0) -> None:
        self.report = report
        self.path = Path(output_dir) / "summary.json"
        self.threshold = float(threshold)
        self.summary: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.report.rows:
            raise ValueError("no slice was scored: nothing to summarise")
        self.summary = summarize_series(self.report.rows, self.threshold)
        atomic_write_json(self.path, {"threshold": self.threshold, "sources": self.summary})
        below = f"fraction_below_{self.threshold:g}"
        for entry in self.summary:
            print(
                f"{entry['source']}: {entry['n_slices']} slices, mean score {entry['mean_score']:.2f} "
                f"(min {entry['min_score']:.2f}, max {entry['max_score']:.2f}), "
                f"{entry[below]:.0%} below {self.threshold:g}"
            )
        print(f"per-slice scores: {self.report.path('predictions.csv')}\nsummary: {self.path}")
