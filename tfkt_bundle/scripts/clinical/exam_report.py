"""The end of a scoring run: per-series outputs, ``index.csv``, ``report.html`` and a table on the console.

:class:`ExamReport` is the handler of the inference workflow (``configs/inference.json``), so the workflow and
``tfkt-score`` write the same files from the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ignite.engine import Engine, Events

from scripts.ctio.window import DEFAULT_HU_WINDOW
from scripts.utils.skips import SkipLog

from .outputs import plot_dose_quality, write_index, write_series_outputs, write_table
from .report_page import write_report_page
from .summary import group_series, summarize_series

__all__ = ["ExamReport", "NothingScoredError", "format_series_table"]

SKIPPED_COLUMNS = ("path", "reason")


class NothingScoredError(ValueError):
    """No slice of the inputs could be scored (the reasons are in ``skipped.csv``)."""


class ExamReport:
    """At the end of a scoring run, write what a physicist looks at, from the rows a prediction report collected.

    In ``output_dir``: ``<series folder>/scores.csv``, ``summary.json`` and ``scores.png`` per series,
    ``index.csv`` (one row per series), ``dose_quality.png`` (with three or more series that carry CTDIvol) and
    ``report.html``. Attach it after the report (handlers run in the order they are attached).

    Args:
        report: the run's :class:`scripts.evaluation.handlers.PredictionReport` (its ``rows`` are read).
        output_dir: folder of the outputs.
        threshold: score below which a slice is flagged as low quality.
        hu_window: window of the thumbnails (the window the network saw).
        page: also write ``report.html`` (it reads the worst slices again for their thumbnails).
        skip_log: the run's :class:`scripts.utils.skips.SkipLog`; its items are written to ``skipped.csv`` (always,
            empty when nothing was skipped), counted on the console and listed in the page.
    """

    def __init__(
        self,
        report,
        output_dir: str,
        threshold: float = 2.0,
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        page: bool = True,
        skip_log: SkipLog | None = None,
    ) -> None:
        self.report = report
        self.output_dir = Path(output_dir)
        self.threshold = float(threshold)
        self.hu_window = tuple(float(v) for v in hu_window)
        self.page = page
        self.skip_log = skip_log
        self.summaries: list[dict] = []
        self.skipped: list[tuple[str, str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.skipped = self._write_skipped()
        if not self.report.rows:
            raise NothingScoredError(f"no slice was scored{self._skip_note()}")
        groups = group_series(self.report.rows)
        self.summaries = summarize_series(self.report.rows, self.threshold)
        folders = [write_series_outputs(self.output_dir, s, groups[s["series"]]) for s in self.summaries]
        write_index(self.output_dir, self.summaries)
        dose = plot_dose_quality(self.summaries, self.output_dir / "dose_quality.png")
        if self.page:
            plots = [folder / "scores.png" for folder in folders]
            write_report_page(
                self.output_dir / "report.html", self.summaries, self.hu_window, plots, dose, self.skipped
            )
        print(format_series_table(self.summaries))
        written = "index.csv, report.html" if self.page else "index.csv"
        print(f"wrote {self.output_dir}: {written} and one folder per series{self._skip_note()}")

    def _write_skipped(self) -> list[tuple[str, str]]:
        if self.skip_log is None:
            return []
        skipped = self.skip_log.read()
        write_table(self.output_dir / "skipped.csv", SKIPPED_COLUMNS, [dict(zip(SKIPPED_COLUMNS, s)) for s in skipped])
        self.skip_log.discard()
        return skipped

    def _skip_note(self) -> str:
        if not self.skipped:
            return ""
        first = "; ".join(f"{Path(p).name}: {r}" for p, r in self.skipped[:3])
        return f" ({len(self.skipped)} items skipped, reasons in {self.output_dir / 'skipped.csv'}: {first}...)"


def format_series_table(summaries: Sequence[dict]) -> str:
    """One line per series: slices, mean, median, min, 10th percentile and the count below the threshold."""
    threshold = summaries[0]["threshold"] if summaries else 2.0
    below = f"below {threshold:g}"
    lines = [f"{'series':<40} {'slices':>6} {'mean':>5} {'median':>6} {'min':>5} {'p10':>5} {below:>8}"]
    for s in summaries:
        name = (s["title"])[:40]
        numbers = f"{s['mean']:>5.2f} {s['median']:>6.2f} {s['min']:>5.2f} {s['p10']:>5.2f}"
        lines.append(f"{name:<40} {s['n_slices']:>6} {numbers} {s['n_below']:>8}")
    return "\n".join(lines)
