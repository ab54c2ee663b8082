"""scripts.clinical.summary: per-series score summaries and the SeriesSummary end-of-run handler."""

import json
from pathlib import Path

import numpy as np
import pytest
from ignite.engine import Engine

from scripts.clinical.summary import SeriesSummary, summarize_series
from scripts.evaluation.handlers import PredictionReport

# Skewed on purpose: the mean (1.75) is not the median (1.0); two values sit exactly on the threshold 1.0.
SCORES_A = [1.0, 4.5, 0.5, 1.0]
SCORES_B = [3.0, 3.8, 2.5]


def _rows():
    """Series A and B interleaved, so grouping cannot rely on consecutive rows."""
    rows = []
    for k in range(max(len(SCORES_A), len(SCORES_B))):
        if k < len(SCORES_A):
            rows.append({"name": f"a{k}", "series": "1.2.3.A", "source": "/x", "prediction": SCORES_A[k]})
        if k < len(SCORES_B):
            rows.append({"name": f"b{k}", "series": "1.2.3.B", "source": "/x", "prediction": SCORES_B[k]})
    return rows


def _expected(key, scores, threshold):
    arr = np.asarray(scores)
    return {
        "source": key,
        "n_slices": arr.size,
        "mean_score": pytest.approx(float(np.sum(arr) / arr.size)),
        "min_score": float(np.min(arr)),
        "max_score": float(np.max(arr)),
        f"fraction_below_{threshold:g}": pytest.approx(np.count_nonzero(arr < threshold) / arr.size),
    }


@pytest.mark.parametrize("threshold", [2.0, 1.0, 2.75])
def test_summary_per_series_in_order_of_first_appearance(threshold):
    assert np.mean(SCORES_A) != np.median(SCORES_A)
    summary = summarize_series(_rows(), threshold=threshold)
    assert summary == [_expected("1.2.3.A", SCORES_A, threshold), _expected("1.2.3.B", SCORES_B, threshold)]


def test_summary_groups_by_source_then_name_when_series_is_absent():
    rows = [
        {"source": "v.nii", "name": "v#0", "prediction": 1.0},
        {"source": "", "name": "x.tif", "prediction": 3.0},
        {"series": "", "source": "v.nii", "name": "v#1", "prediction": 2.0},
    ]
    summary = summarize_series(rows)
    assert [(s["source"], s["n_slices"], s["mean_score"]) for s in summary] == [("v.nii", 2, 1.5), ("x.tif", 1, 3.0)]


def _run_summary(rows, tmp_path: Path, threshold=2.0):
    report = PredictionReport(str(tmp_path), prefix="test")  # the real report, its rows filled as a run would
    report.rows = rows
    handler = SeriesSummary(report, str(tmp_path), threshold=threshold)
    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    return handler


def test_series_summary_handler_writes_summary_json(tmp_path, capsys):
    handler = _run_summary(_rows(), tmp_path, threshold=2.0)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == {"threshold": 2.0, "sources": handler.summary}
    assert written["sources"] == [_expected("1.2.3.A", SCORES_A, 2.0), _expected("1.2.3.B", SCORES_B, 2.0)]
    out = capsys.readouterr().out
    assert "1.2.3.A: 4 slices, mean score 1.75 (min 0.50, max 4.50), 75% below 2" in out
    assert str(tmp_path / "test_predictions.csv") in out


def test_series_summary_handler_without_rows_raises(tmp_path):
    with pytest.raises(ValueError, match="no slice was scored"):
        _run_summary([], tmp_path)
    assert not (tmp_path / "summary.json").exists()
