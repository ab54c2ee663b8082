"""scripts.report: prediction CSVs, the text report, the scatter plot and re-scoring (incl. the published numbers)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine, Events

from scripts.evaluation import metrics, report
from scripts.evaluation.handlers import PredictionReport

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_csv(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def small_csv(tmp_path):
    rng = np.random.default_rng(0)
    label = np.round(rng.uniform(0, 4, 40) * 5) / 5
    frame = pd.DataFrame(
        {"image": [f"{i:04d}.tif" for i in range(40)], "score": label, "prediction": label + rng.normal(0, 0.4, 40)}
    )
    frame.to_csv(tmp_path / "pred.csv", index=False)
    return tmp_path / "pred.csv", frame


def _no_temporary_files(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------------------------
# The published TFKT-V2 predictions
# ------------------------------------------------------------------------------------------------------------------


def test_rescoring_the_published_predictions_reproduces_the_paper(shared_reference_predictions, tmp_path, capsys):
    columns = pd.read_csv(shared_reference_predictions, nrows=0).columns.tolist()
    assert columns == ["image", "radiologist_score", "tfkt_v2_prediction"]
    result = report.rescore_csv(
        shared_reference_predictions, "radiologist_score", "tfkt_v2_prediction", out_dir=tmp_path, n_boot=200, seed=0
    )
    assert result["n"] == 300
    rounded = {key: round(result[key], 4) for key in ("plcc", "srocc", "krocc", "score")}
    assert rounded == {"plcc": 0.9462, "srocc": 0.9440, "krocc": 0.8074, "score": 2.6976}
    printed = capsys.readouterr().out
    for text in ("PLCC  0.9462", "SROCC 0.9440", "KROCC 0.8074", "score 2.6976", "logistic-mapped"):
        assert text in printed
    saved = json.loads((tmp_path / report.METRICS_FILENAME).read_text())
    assert saved["score"] == pytest.approx(result["score"], abs=1e-12)
    assert saved["source"]["prediction_column"] == "tfkt_v2_prediction"
    assert (tmp_path / report.SCATTER_FILENAME).read_bytes().startswith(PNG_SIGNATURE)
    assert _no_temporary_files(tmp_path)


# ------------------------------------------------------------------------------------------------------------------
# Reading and writing prediction files
# ------------------------------------------------------------------------------------------------------------------


def test_read_predictions_csv_returns_scores_and_names_in_file_order(small_csv):
    path, frame = small_csv
    table = report.read_predictions_csv(path, "score", "prediction", name_column="image")
    np.testing.assert_array_equal(table.pred, frame["prediction"].to_numpy())
    np.testing.assert_array_equal(table.label, frame["score"].to_numpy())
    assert table.names[:2] == ["0000.tif", "0001.tif"]  # names stay text: no leading zeros lost
    assert report.read_predictions_csv(path, "score", "prediction").names is None


def test_read_predictions_csv_names_the_available_columns(small_csv):
    path, _ = small_csv
    with pytest.raises(ValueError, match=r"\['mos'\] not in .*available columns: image, score, prediction"):
        report.read_predictions_csv(path, "mos", "prediction")


@pytest.mark.parametrize(
    "text, match",
    [
        ("name,label,pred\na,1,2\nb,2,x\n", r"'pred' .* 1 empty or non-numeric value\(s\): line 3 \('x'\)"),
        ("name,label,pred\na,1,2\nb,,3\n", r"'label' .* line 3 \(''\)"),
        ("", "is empty"),
        ("name,label,pred\n", "header but no rows"),
    ],
)
def test_read_predictions_csv_rejects_bad_files(tmp_path, text, match):
    path = _write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match):
        report.read_predictions_csv(path, "label", "pred")


def test_read_predictions_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        report.read_predictions_csv(tmp_path / "absent.csv", "label", "pred")


def test_write_predictions_csv_round_trips(tmp_path):
    rows = [{"image": "0001.tif", "prediction": 2.5, "label": 3.0}, {"image": "0002.tif", "prediction": 1 / 3}]
    path = report.write_predictions_csv(rows, tmp_path / "out" / "predictions.csv")
    assert path.read_text().splitlines()[0] == "image,prediction,label"
    frame = pd.read_csv(path, dtype={"image": str})
    assert frame["image"].tolist() == ["0001.tif", "0002.tif"]
    assert frame["prediction"].tolist() == [2.5, 1 / 3]  # full precision survives
    assert np.isnan(frame["label"].iloc[1])
    assert _no_temporary_files(path.parent)


def test_write_predictions_csv_rejects_no_rows(tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        report.write_predictions_csv([], tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


# ------------------------------------------------------------------------------------------------------------------
# Report text and plot
# ------------------------------------------------------------------------------------------------------------------


def test_format_metrics_labels_raw_and_mapped_values_with_intervals(small_csv):
    path, frame = small_csv
    summary = metrics.summarize(frame["prediction"], frame["score"], n_boot=50, seed=1)
    text = report.format_metrics(summary)
    lines = text.splitlines()
    assert lines[0].startswith("n = 40 items; 95% bootstrap CIs over items (50 resamples, seed 1)")
    plcc_line = next(line for line in lines if line.startswith("raw") and "PLCC" in line)
    low, high = summary["plcc_ci"]
    assert plcc_line.endswith(f"{summary['plcc']:.4f} [{low:.4f}, {high:.4f}]")
    mapped = [line for line in lines if line.startswith("logistic-mapped")]
    assert len(mapped) == 2 and f"{summary['plcc_logistic4']:.4f} (4-parameter)" in mapped[0]
    assert f"{summary['plcc_logistic5']:.4f} (5-parameter)" in mapped[0]


def test_format_metrics_without_intervals_and_with_a_linear_fallback(small_csv):
    _, frame = small_csv
    summary = metrics.summarize(frame["prediction"], frame["score"], n_boot=0)
    summary["logistic4_form"] = "linear"
    text = report.format_metrics(summary)
    assert "no confidence intervals" in text and "[" not in text
    assert "(4-parameter, linear fallback)" in text and "(5-parameter)" in text


@pytest.mark.parametrize("with_metrics", [False, True])
def test_plot_scatter_writes_a_png_atomically(small_csv, tmp_path, with_metrics):
    _, frame = small_csv
    summary = {"plcc": 0.1, "srocc": 0.2, "krocc": 0.3, "score": 0.6} if with_metrics else None
    out = report.plot_scatter(frame["prediction"], frame["score"], tmp_path / "plots" / "s.png", metrics=summary)
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert out.stat().st_size > 10_000
    assert _no_temporary_files(out.parent)


def test_rescore_csv_without_out_dir_writes_nothing(small_csv, capsys):
    path, frame = small_csv
    before = sorted(p.name for p in path.parent.iterdir())
    result = report.rescore_csv(path, "score", "prediction", n_boot=0)
    assert sorted(p.name for p in path.parent.iterdir()) == before
    assert result["score"] == pytest.approx(metrics.challenge_score(frame["prediction"], frame["score"]), abs=1e-12)
    assert "raw              score" in capsys.readouterr().out


def test_command_line_entry(small_csv, tmp_path, capsys):
    path, _ = small_csv
    args = [str(path), "--label-column", "score", "--prediction-column", "prediction", "--n-boot", "20"]
    result = report.main(args + ["--out-dir", str(tmp_path / "eval")])
    assert (tmp_path / "eval" / report.METRICS_FILENAME).exists()
    assert result["n_boot"] == 20 and "PLCC" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------------------
# PredictionReport in an ignite engine
# ------------------------------------------------------------------------------------------------------------------

REPORT_LABELS = [0.4, 3.0, 1.2, 2.6, 4.0]
BEST_EPOCHS = {1: 1, 2: 1, 3: 3, 4: 3}  # epoch -> best_metric_epoch after it: epochs 2 and 4 do not improve


def _epoch_predictions(epoch: int) -> list[float]:
    """Different per epoch, in values and in correlation with the labels."""
    return (np.roll([0.5, 1.5, 2.0, 3.0, 3.5], epoch) + 0.01 * epoch).tolist()


def _run_report(tmp_path, only_best: bool) -> list[pd.DataFrame]:
    """Four epochs over batches of 2 + 2 + 1 items; returns the CSV as it stands after each epoch."""
    items = [{"name": f"img{k}", "label": y} for k, y in enumerate(REPORT_LABELS)]

    def step(engine, batch):
        preds = _epoch_predictions(engine.state.epoch)
        return [{"pred": torch.tensor([preds[int(i["name"][3:])]]), "label": torch.tensor([i["label"]])} for i in batch]

    def key_metric(engine):
        engine.state.best_metric_epoch = BEST_EPOCHS[engine.state.epoch]

    engine = Engine(step)
    # Registered before the report, as the evaluator's key-metric handler is: the report sees this epoch's best.
    engine.add_event_handler(Events.EPOCH_COMPLETED, key_metric)
    PredictionReport(str(tmp_path), prefix="val", only_best=only_best, n_boot=0).attach(engine)
    snapshots = []
    engine.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: snapshots.append(pd.read_csv(tmp_path / "val_predictions.csv"))
    )
    engine.run([items[0:2], items[2:4], items[4:]], max_epochs=4)
    return snapshots


def _check_csv(frame: pd.DataFrame, epoch: int) -> None:
    assert frame.columns.tolist() == ["name", "prediction", "label"]
    assert frame["name"].tolist() == [f"img{k}" for k in range(len(REPORT_LABELS))]
    np.testing.assert_allclose(frame["prediction"], _epoch_predictions(epoch), rtol=1e-6)
    np.testing.assert_allclose(frame["label"], REPORT_LABELS, rtol=1e-6)


def test_prediction_report_writes_only_on_best_epochs(tmp_path):
    snapshots = _run_report(tmp_path, only_best=True)
    for snapshot, epoch in zip(snapshots, BEST_EPOCHS.values()):
        _check_csv(snapshot, epoch)
    written = json.loads((tmp_path / "val_metrics.json").read_text())
    assert written["n"] == len(REPORT_LABELS) and written["score_ci"] is None
    assert written["plcc"] == pytest.approx(np.corrcoef(_epoch_predictions(3), REPORT_LABELS)[0, 1], abs=1e-5)


def test_prediction_report_writes_every_epoch_without_only_best(tmp_path):
    snapshots = _run_report(tmp_path, only_best=False)
    for snapshot, epoch in zip(snapshots, BEST_EPOCHS):
        _check_csv(snapshot, epoch)
