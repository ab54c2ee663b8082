"""The end of a scoring run: per-series outputs, ``index.csv``, ``report.html`` and a table on the console.

:class:`ExamReport` is the handler of the inference workflow (``configs/inference.json``), so the workflow and
``tfkt-score`` write the same files from the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ignite.engine import Engine, Events

from scripts.ctio.window import DEFAULT_HU_WINDOW
from scripts.utils.numbers import finite_float
from scripts.utils.skips import SKIPPED_COLUMNS, SKIPPED_CSV, SkipLog

from .outputs import plot_dose_quality, read_table, write_index, write_series_outputs, write_table
from .report_page import write_report_page
from .summary import SPREAD_KEY, group_series, summarize_series

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ExamReport", "NothingScoredError", "format_series_table"]


class NothingScoredError(ValueError):
    """No slice of the inputs could be scored (the reasons are in ``skipped.csv``)."""


class ExamReport:
    """Write what a physicist looks at, from the rows a prediction report collects, series by series.

    Each series' folder (``scores.csv``, ``scores.png``, then ``summary.json``, which marks it finished) is written
    as soon as all of its slices are scored, so an interrupted run keeps the series it finished; the rest when the
    run ends. Then ``index.csv`` (one row per series), ``dose_quality.png`` (three or more series that carry
    CTDIvol), ``skipped.csv`` and ``report.html``. Attach it after the report (handlers run in the order attached).

    Args:
        report: the run's :class:`scripts.evaluation.handlers.PredictionReport` (its ``rows`` are read).
        output_dir: folder of the outputs.
        threshold: score below which a slice is flagged as low quality.
        hu_window: window of the thumbnails (the window the network saw).
        page: also write ``report.html`` (it reads the worst slices again for their thumbnails).
        skip_log: the run's :class:`scripts.utils.skips.SkipLog`; its items are written to ``skipped.csv`` (always,
            empty when nothing was skipped), counted on the console and listed in the page.
        finished: summaries of series a previous run finished (:func:`scripts.clinical.outputs.finished_series`),
            kept in the index and the page; the stream should not read them again.
        network: the run's torch network, weights loaded, for a map of per-region quality beside each thumbnail
            (:mod:`scripts.nets.explain`; computed for the shown slices only). None: no maps. A network without
            per-region tokens (``tfkt_v2``, the ONNX runtime) gets a note in the page instead.

    With ``configs/inference_uncertainty.json``, the outputs of the evaluator carry ``score_sd`` beside ``pred``: it
    is added to the report's row of each slice, hence to scores.csv, the summaries and the index.
    """

    def __init__(
        self,
        report,
        output_dir: str,
        threshold: float = 2.0,
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        page: bool = True,
        skip_log: SkipLog | None = None,
        finished: Mapping[str, dict] | None = None,
        network: nn.Module | None = None,
    ) -> None:
        self.report = report
        self.output_dir = Path(output_dir)
        self.threshold = float(threshold)
        self.hu_window = tuple(float(v) for v in hu_window)
        self.page = page
        self.skip_log = skip_log
        self.previous = dict(finished or {})
        self.network = network
        self.written: dict[str, dict] = {}  # series finished in this run, by key
        self.counts: dict[str, int] = {}  # slices scored so far, by series
        self.summaries: list[dict] = []
        self.skipped: list[tuple[str, str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write_finished)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _write_finished(self, engine: Engine) -> None:
        """Write the series whose planned slices (``series_slices``) have all been scored."""
        self._add_spread(engine)
        for item in _batch_items(engine.state.batch):
            key = str(item.get("series"))
            self.counts[key] = self.counts.get(key, 0) + 1
            planned = _planned(item)
            if key not in self.written and planned is not None and self.counts[key] >= planned:
                self._write_series(key, group_series([r for r in self.report.rows if str(r.get("series")) == key])[key])

    def _add_spread(self, engine: Engine) -> None:
        """Copy each output's ``score_sd`` into the row the report collected for it in this iteration (the report
        runs first and appends one row per item, in the batch's order)."""
        outputs = engine.state.output if isinstance(engine.state.output, (list, tuple)) else []
        spreads = [out.get(SPREAD_KEY) for out in outputs if isinstance(out, Mapping)]
        if not spreads or all(s is None for s in spreads):
            return
        if len(self.report.rows) < len(spreads):
            raise RuntimeError("attach ExamReport after the PredictionReport it reads")
        for row, spread in zip(self.report.rows[-len(spreads) :], spreads):
            row[SPREAD_KEY] = float(np.asarray(spread, dtype=float).reshape(-1)[0])

    def _reset(self, engine: Engine) -> None:
        self.written, self.counts = {}, {}

    def add_series(self, rows: Sequence[dict]) -> None:
        """Keep whole series scored elsewhere (the workers of ``tfkt-score --engine ray``) and write their folders
        now, with the writers the workflow uses; a series already written is kept once, never written twice."""
        for key, group in group_series(rows).items():
            if key not in self.written:
                self.report.rows.extend(group)
                self._write_series(key, group)

    def _write_series(self, key: str, rows: list[dict]) -> None:
        (summary,) = summarize_series(rows, self.threshold)
        write_series_outputs(self.output_dir, summary, rows)
        self.written[key] = summary

    def __call__(self, engine: Engine) -> None:
        self.skipped = self._write_skipped()
        if not self.report.rows and not self.previous:
            raise NothingScoredError(f"no slice was scored{self._skip_note()}")
        for key, rows in group_series(self.report.rows).items():
            if key not in self.written:  # slices skipped on decoding, image folders: finished only now
                self._write_series(key, rows)
        self.summaries = [*self.previous.values(), *self.written.values()]
        write_index(self.output_dir, self.summaries)
        dose = plot_dose_quality(self.summaries, self.output_dir / "dose_quality.png")
        if self.page:
            plots = [self.output_dir / s["folder"] / "scores.png" for s in self.summaries]
            quality_map, map_note = self._quality_map()
            write_report_page(
                self.output_dir / "report.html", self.summaries, self.hu_window, plots, dose, self.skipped,
                quality_map=quality_map, map_note=map_note,
            )  # fmt: skip
        print(format_series_table(self.summaries))
        kept = f" ({len(self.previous)} series kept from the previous run)" if self.previous else ""
        written = "index.csv, report.html" if self.page else "index.csv"
        print(f"wrote {self.output_dir}: {written} and one folder per series{kept}{self._skip_note()}")

    def _quality_map(self) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str]:
        """The page's per-region map of a slice as the network sees it, or None and why there is none."""
        if self.network is None:
            return None, ""
        from scripts.nets.explain import region_score_map, why_no_token_maps  # torch: only when maps are drawn

        reason = why_no_token_maps(self.network)
        if reason is not None:
            return None, f"No per-region quality maps: {reason}."
        return (lambda image: region_score_map(self.network, image)), ""

    def _write_skipped(self) -> list[tuple[str, str]]:
        if self.skip_log is None:
            return []
        earlier = [(r["path"], r["reason"]) for r in read_table(self.output_dir / SKIPPED_CSV)] if self.previous else []
        skipped = list(dict.fromkeys([*earlier, *self.skip_log.read()]))
        write_table(self.output_dir / SKIPPED_CSV, SKIPPED_COLUMNS, [dict(zip(SKIPPED_COLUMNS, s)) for s in skipped])
        self.skip_log.discard()
        return skipped

    def _skip_note(self) -> str:
        if not self.skipped:
            return ""
        first = "; ".join(f"{Path(p).name}: {r}" for p, r in self.skipped[:3])
        return f" ({len(self.skipped)} items skipped, reasons in {self.output_dir / 'skipped.csv'}: {first}...)"


def _batch_items(batch) -> list[dict]:
    """The decollated items of a batch (MONAI's evaluators hand handlers a list of dicts)."""
    return list(batch) if isinstance(batch, (list, tuple)) else []


def _planned(item: dict) -> int | None:
    planned = finite_float(item.get("series_slices"))
    return None if planned is None else int(planned)


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
