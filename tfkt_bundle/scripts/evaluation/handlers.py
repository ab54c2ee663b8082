"""Ignite handlers: quality-score correlations (``key_metric`` / ``additional_metrics``) and prediction reports.

Each wraps a cumulative metric of ``scripts.evaluation.metrics`` in ``monai.handlers.IgniteMetricHandler``, like MONAI's
``ROCAUC`` handler: the epoch's (prediction, label) pairs are buffered, gathered across ranks and scored at epoch end.
Example (``validate#key_metric`` of a bundle config)::

    "val_score": {
        "_target_": "scripts.evaluation.handlers.ChallengeScore",
        "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"
    }
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import IgniteMetricHandler

from scripts.utils.atomic import atomic_write_json

from .metrics import (
    ChallengeScoreMetric,
    CorrelationMetric,
    KROCCMetric,
    PLCCMetric,
    SROCCMetric,
    UndefinedStatisticError,
    summarize,
)
from .report import format_metrics, plot_scatter, write_predictions_csv

__all__ = ["PLCC", "SROCC", "KROCC", "ChallengeScore", "PredictionReport"]

logger = logging.getLogger(__name__)


def _identity(x):
    return x


class _CorrelationHandler(IgniteMetricHandler):
    """Shared constructor; subclasses name the cumulative metric they wrap.

    Args:
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``: batch-first tensors of shape (B, 1) or (B,),
            or lists of per-item tensors (what ``from_engine`` returns after MONAI's decollation).
        undefined_value: value reported, with a warning, when the statistic is undefined (e.g. an untrained network
            predicting a constant); ``None`` raises instead. See ``scripts.evaluation.metrics.CorrelationMetric``.
        save_details: also store the buffered (pred, label) tensors in ``engine.state.metric_details``.
    """

    metric_class: type[CorrelationMetric]

    def __init__(
        self, output_transform: Callable = _identity, undefined_value: float | None = 0.0, save_details: bool = False
    ) -> None:
        metric_fn = self.metric_class(undefined_value=undefined_value)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class PLCC(_CorrelationHandler):
    """Pearson linear correlation over the epoch (raw predictions, signed)."""

    metric_class = PLCCMetric


class SROCC(_CorrelationHandler):
    """Spearman rank-order correlation over the epoch (signed)."""

    metric_class = SROCCMetric


class KROCC(_CorrelationHandler):
    """Kendall tau-b over the epoch (signed)."""

    metric_class = KROCCMetric


class ChallengeScore(_CorrelationHandler):
    """LDCTIQAC 2023 overall score |PLCC| + |SROCC| + |KROCC| over the epoch (0-3, higher is better)."""

    metric_class = ChallengeScoreMetric


class PredictionReport:
    """Per-item predictions of an evaluation epoch, written out with the pooled metrics.

    Collects each item's name, prediction and (if present) label; at epoch end writes ``<prefix>_predictions.csv``
    and, with labels, ``<prefix>_metrics.json`` (``scripts.evaluation.metrics.summarize``: correlations, challenge
    score, logistic-mapped PLCC, RMSE, bootstrap CIs) and ``<prefix>_scatter.png``. All writes are atomic.

    Args:
        output_dir: folder of the files.
        prefix: file-name prefix, e.g. "val" or "test".
        only_best: write only on epochs where the evaluator's key metric improved (validation during training).
        n_boot: bootstrap resamples for the confidence intervals.
        print_report: print the metrics report and the files written (stand-alone evaluation).
        checkpoint: the checkpoint being scored, named in the printed report.
        extra_keys: item keys copied into each row (e.g. series and instance identifiers at inference).
    """

    def __init__(
        self,
        output_dir: str,
        prefix: str = "val",
        only_best: bool = True,
        n_boot: int = 1000,
        print_report: bool = False,
        extra_keys: Sequence[str] = (),
        checkpoint: str | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.only_best = only_best
        self.n_boot = n_boot
        self.print_report = print_report
        self.checkpoint = checkpoint
        self.extra_keys = tuple(extra_keys)
        self.rows: list[dict] = []
        self.summary: dict | None = None

    def path(self, kind: str) -> Path:
        """Where the report's ``kind`` file goes: "predictions.csv", "metrics.json" or "scatter.png"."""
        return self.output_dir / f"{self.prefix}_{kind}"

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _collect(self, engine: Engine) -> None:
        outputs, batch = engine.state.output, engine.state.batch
        for out, item in zip(outputs, batch):
            row = {"name": _item_name(item), "prediction": float(torch.as_tensor(out["pred"]).reshape(-1)[0])}
            row.update({key: _plain(item.get(key)) for key in self.extra_keys})
            label = out.get("label")
            if label is not None:
                row["label"] = float(torch.as_tensor(label).reshape(-1)[0])
            self.rows.append(row)

    def _write(self, engine: Engine) -> None:
        if not self.rows:
            return
        if self.only_best and getattr(engine.state, "best_metric_epoch", engine.state.epoch) != engine.state.epoch:
            return
        write_predictions_csv(self.rows, self.path("predictions.csv"))
        if "label" not in self.rows[0]:
            return
        pred = np.array([r["prediction"] for r in self.rows])
        label = np.array([r["label"] for r in self.rows])
        try:
            self.summary = summarize(pred, label, n_boot=self.n_boot)
        except UndefinedStatisticError as e:
            logger.warning("%s metrics not written: %s", self.prefix, e)
            return
        atomic_write_json(self.path("metrics.json"), self.summary)
        plot_scatter(pred, label, self.path("scatter.png"), title=f"{self.prefix} set", metrics=self.summary)
        if self.print_report:
            scored = f"{self.checkpoint} on " if self.checkpoint else ""
            print(f"{self.prefix}: {scored}{len(self.rows)} items\n{format_metrics(self.summary)}")
            written = ", ".join(self.path(kind).name for kind in ("predictions.csv", "metrics.json", "scatter.png"))
            print(f"wrote {self.output_dir}: {written}")


def _plain(value):
    """Tensor scalars and numpy numbers as Python values for the CSV."""
    if isinstance(value, (torch.Tensor, np.generic)):
        return value.item()
    return value


def _item_name(item: dict) -> str:
    if "name" in item:
        return str(item["name"])
    image = item.get("image")
    meta = getattr(image, "meta", {}) or {}
    return str(meta.get("filename_or_obj", ""))
