"""Prediction files and evaluation reports: read/write prediction CSVs, re-score them, print and plot the result.

``rescore_csv`` is the entry point of the rescoring workflow (``configs/rescore.json``) and of the command line::

    python -m scripts.evaluation.report predictions.csv --label-column radiologist_score \\
        --prediction-column prediction --out-dir eval/
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scripts.utils.atomic import atomic_path, atomic_save_png, atomic_write_json

from .metrics import logistic_fit, point_metrics, summarize

__all__ = [
    "PredictionTable",
    "read_predictions_csv",
    "write_predictions_csv",
    "plot_scatter",
    "format_metrics",
    "rescore_csv",
]

METRICS_FILENAME = "metrics.json"
SCATTER_FILENAME = "scatter.png"


class PredictionTable(NamedTuple):
    """Scores read from a predictions file: float64 vectors in file order, and the item names if asked for."""

    pred: np.ndarray
    label: np.ndarray
    names: list[str] | None


# ----------------------------------------------------------------------------------------------------------------
# CSV in and out
# ----------------------------------------------------------------------------------------------------------------


def _numeric_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """The column as float64; empty or non-numeric cells are an error that names their file lines."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if bad.size:
        # +2: one for the header line, one because file lines count from 1.
        shown = ", ".join(f"line {i + 2} ({frame[column].iloc[i]!r})" for i in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise ValueError(f"column {column!r} of {path} has {bad.size} empty or non-numeric value(s): {shown}{more}")
    return values.to_numpy(dtype=np.float64)


def read_predictions_csv(
    path: str | os.PathLike, label_column: str, prediction_column: str, name_column: str | None = None
) -> PredictionTable:
    """Read predicted and reference scores from a CSV file with a header line.

    Args:
        path: the CSV file.
        label_column: column of the reference (e.g. radiologist) scores.
        prediction_column: column of the predicted scores.
        name_column: optional column of item names (e.g. image file names), returned as strings.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, a column is missing (the message lists the available ones) or a score
            cell is empty or not a number (the message names its line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    try:
        # Names stay text ("0001.tif" must not become 1); score columns are converted below with line-level errors.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"predictions file {path} is empty") from err
    wanted = [c for c in (label_column, prediction_column, name_column) if c is not None]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        available = ", ".join(map(str, frame.columns))
        raise ValueError(f"column(s) {missing} not in {path}; available columns: {available}")
    if frame.empty:
        raise ValueError(f"predictions file {path} has a header but no rows")
    names = frame[name_column].astype(str).tolist() if name_column is not None else None
    pred = _numeric_column(frame, prediction_column, path)
    return PredictionTable(pred=pred, label=_numeric_column(frame, label_column, path), names=names)


def write_predictions_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write one CSV line per row (dicts of column -> value) atomically and return the path.

    The header is the union of the rows' keys in first-seen order; a row lacking a key gets an empty cell.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to write: the header cannot be known")
    fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames, restval="")
            writer.writeheader()
            writer.writerows(rows)
    return Path(path)


# ----------------------------------------------------------------------------------------------------------------
# Plot
# ----------------------------------------------------------------------------------------------------------------


def _metrics_legend(pred: np.ndarray, label: np.ndarray, metrics: Mapping[str, Any] | None) -> str:
    if metrics is None:
        metrics = point_metrics(pred, label)
    names = {"plcc": "PLCC", "srocc": "SROCC", "krocc": "KROCC", "score": "score"}
    return "raw: " + "  ".join(f"{name} {metrics[key]:.4f}" for key, name in names.items())


def plot_scatter(
    pred: Sequence[float] | np.ndarray,
    label: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    title: str = "Predicted vs reference quality",
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Scatter of predictions (x) against reference scores (y) with the identity line and a fitted 4-parameter
    logistic curve; raw-prediction PLCC/SROCC/KROCC/score are shown under the title. Written atomically as PNG.

    Args:
        pred: predicted scores.
        label: reference scores.
        path: output PNG file.
        title: first title line.
        metrics: a ``summarize`` result (or any mapping with plcc, srocc, krocc, score); computed when ``None``.

    Returns:
        The path written.
    """
    x, y = np.asarray(pred, dtype=np.float64).reshape(-1), np.asarray(label, dtype=np.float64).reshape(-1)
    legend_text = _metrics_legend(x, y, metrics)
    mapping = logistic_fit(x, y, params=4)
    # The object API with the Agg canvas leaves pyplot's global state and the process-wide backend untouched.
    fig = Figure(figsize=(6.0, 6.0), dpi=120)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=12, alpha=0.6, label=f"items (n={x.size})")
    low, high = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="identity")
    grid = np.linspace(x.min(), x.max(), 200)
    curve_label = "4-parameter logistic fit" if mapping.converged else "linear fit (logistic did not converge)"
    ax.plot(grid, mapping(grid), "r-", linewidth=1.5, label=curve_label)
    ax.set_xlabel("predicted score")
    ax.set_ylabel("reference score")
    ax.set_title(f"{title}\n{legend_text}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_save_png(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Text report
# ----------------------------------------------------------------------------------------------------------------


def _with_ci(summary: Mapping[str, Any], key: str) -> str:
    ci = summary.get(f"{key}_ci")
    text = f"{summary[key]:.4f}"
    return f"{text} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci is not None else text


def _mapped(summary: Mapping[str, Any], key: str, params: int) -> str:
    fell_back = summary.get(f"logistic{params}_form") == "linear"
    return f"{summary[key]:.4f} ({params}-parameter{', linear fallback' if fell_back else ''})"


def format_metrics(summary: Mapping[str, Any]) -> str:
    """Compact multi-line report of a ``summarize`` result: raw correlations and score with their bootstrap CIs,
    then PLCC and RMSE after logistic mapping, each line labelled "raw" or "logistic-mapped"."""
    ci_note = "no confidence intervals"
    if summary.get("n_boot"):
        ci_note = f"{summary['ci_level']:.0%} bootstrap CIs over items ({summary['n_boot']} resamples"
        ci_note += f", seed {summary['seed']})"
    lines = [
        f"n = {summary['n']} items; {ci_note}",
        f"raw              PLCC  {_with_ci(summary, 'plcc')}",
        f"raw              SROCC {_with_ci(summary, 'srocc')}",
        f"raw              KROCC {_with_ci(summary, 'krocc')}",
        f"raw              score {_with_ci(summary, 'score')}  (|PLCC| + |SROCC| + |KROCC|, LDCTIQAC 2023)",
        f"raw              RMSE  {summary['rmse']:.4f}",
        f"logistic-mapped  PLCC  {_mapped(summary, 'plcc_logistic4', 4)}  {_mapped(summary, 'plcc_logistic5', 5)}",
        f"logistic-mapped  RMSE  {_mapped(summary, 'rmse_logistic4', 4)}",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Re-scoring
# ----------------------------------------------------------------------------------------------------------------


def rescore_csv(
    path: str | os.PathLike,
    label_column: str,
    prediction_column: str,
    out_dir: str | os.PathLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Re-score a predictions file: ``summarize`` it, print ``format_metrics``, optionally save JSON and a plot.

    Args:
        path: CSV with a header line.
        label_column: column of the reference scores.
        prediction_column: column of the predicted scores.
        out_dir: when given, ``metrics.json`` (the returned dict) and ``scatter.png`` are written there atomically.
        n_boot: bootstrap resamples for the confidence intervals (0 for none).
        seed: seed of the bootstrap.
        alpha: 1 - confidence level.

    Returns:
        The ``summarize`` dict plus ``source`` (file and columns).
    """
    table = read_predictions_csv(path, label_column, prediction_column)
    result = summarize(table.pred, table.label, n_boot=n_boot, alpha=alpha, seed=seed)
    result["source"] = {"path": str(path), "label_column": label_column, "prediction_column": prediction_column}
    print(format_metrics(result))
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_json(out_dir / METRICS_FILENAME, result)
        plot_scatter(table.pred, table.label, out_dir / SCATTER_FILENAME, title=Path(path).name, metrics=result)
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m scripts.evaluation.report FILE --label-column A --prediction-column B``."""
    parser = argparse.ArgumentParser(description=rescore_csv.__doc__.splitlines()[0])
    parser.add_argument("path", help="predictions CSV with a header line")
    parser.add_argument("--label-column", required=True)
    parser.add_argument("--prediction-column", required=True)
    parser.add_argument("--out-dir", default=None, help="write metrics.json and scatter.png here")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return rescore_csv(args.path, args.label_column, args.prediction_column, args.out_dir, args.n_boot, args.seed)


if __name__ == "__main__":
    main()
