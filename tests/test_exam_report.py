"""scripts.clinical.exam_report / outputs / report_page: the end-of-run handler on rows as a run collects them."""

import csv
import math

import numpy as np
import pytest
import tifffile
import torch
from ignite.engine import Engine

from scripts.clinical.exam_report import ExamReport
from scripts.clinical.outputs import INDEX_COLUMNS, SCORES_COLUMNS
from scripts.evaluation.handlers import PredictionReport


def _rows(folder, n=4, ctdi=math.nan):
    """Rows of one folder of image files, as the inference workflow's report collects them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        path = folder / f"s{k}.tif"
        tifffile.imwrite(path, np.full((40, 30), k / n, dtype=np.float32))
        rows.append(
            {"name": path.name, "series": str(folder), "source": str(path), "slice_index": 0.0, "frame": math.nan,
             "z": math.nan, "ctdi_vol": ctdi, "prediction": 3.0 - k}
        )  # fmt: skip
    return rows


def _run(rows, out, **kwargs) -> ExamReport:
    report = PredictionReport(str(out), prefix="slice")  # the real report, its rows filled as a run would
    report.rows = rows
    handler = ExamReport(report, str(out), **kwargs)
    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    return handler


def test_writes_per_series_files_index_and_page(tmp_path, capsys):
    handler = _run(_rows(tmp_path / "in" / "a") + _rows(tmp_path / "in" / "b", n=2), tmp_path / "out")
    a, b = handler.summaries
    for summary, n in ((a, 4), (b, 2)):
        with open(tmp_path / "out" / summary["folder"] / "scores.csv") as handle:
            table = list(csv.DictReader(handle))
        assert list(table[0]) == list(SCORES_COLUMNS) and len(table) == n
        assert [float(r["score"]) for r in table] == [3.0 - k for k in range(n)]
        assert table[0]["z"] == "" and table[0]["slice_index"] == "0"  # absent numbers are empty cells
    with open(tmp_path / "out" / "index.csv") as handle:
        index = list(csv.DictReader(handle))
    assert list(index[0]) == list(INDEX_COLUMNS) and [r["folder"] for r in index] == [a["folder"], b["folder"]]
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<figure>") == 4 + 2 and "(not readable" not in page
    printed = capsys.readouterr().out
    assert printed.split("\n")[1].split()[:2] == ["a", "4"]  # the folder name, not the hashed output folder


def test_a_slice_that_cannot_be_read_again_keeps_its_scores_in_the_page(tmp_path):
    rows = _rows(tmp_path / "in" / "a")
    (tmp_path / "in" / "a" / "s3.tif").unlink()  # the worst slice, gone before the page is written
    _run(rows, tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<figure>") == 4 and page.count("(not readable") == 1


def test_page_can_be_left_out_and_nothing_scored_is_an_error(tmp_path):
    _run(_rows(tmp_path / "in" / "a"), tmp_path / "out", page=False)
    assert (tmp_path / "out" / "index.csv").is_file() and not (tmp_path / "out" / "report.html").exists()
    with pytest.raises(ValueError, match="no slice was scored"):
        _run([], tmp_path / "empty")
    assert not (tmp_path / "empty" / "index.csv").exists()


# --------------------------------------------------------------------------------------------------------------------
# per-region quality maps and the score's spread over flips and rotations


def test_each_shown_slice_gets_a_quality_map_computed_for_it_alone(tmp_path):
    from scripts.nets.networks import create_network

    network = create_network("hybrid_tiny").eval()
    calls = []
    network.backbone.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    handler = _run(_rows(tmp_path / "in" / "a", n=7) + _rows(tmp_path / "in" / "b", n=2), tmp_path / "out",
                   network=network)  # fmt: skip
    page = (tmp_path / "out" / "report.html").read_text()
    shown = sum(len(s["worst"]) for s in handler.summaries)
    assert shown == 5 + 2 and page.count("<figure>") == shown
    assert page.count('<img class="map"') == shown and page.count("per-region quality") == shown
    assert calls == [(1, 1, 40, 30)] * shown  # the shown slices only, one network call each, at full size
    assert page.count('class="scale"') == 2  # one colour scale per series
    assert "No per-region quality maps" not in page


def test_a_network_without_tokens_gets_a_note_and_no_maps(tmp_path):
    _run(_rows(tmp_path / "in" / "a"), tmp_path / "out", network=torch.nn.Conv2d(1, 1, 3))
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("No per-region quality maps: Conv2d is not a torch network with per-region tokens") == 1
    assert 'class="map"' not in page and page.count("<figure>") == 4
    _run(_rows(tmp_path / "in" / "a"), tmp_path / "off", network=None)  # maps turned off: no note either
    page = (tmp_path / "off" / "report.html").read_text()
    assert 'class="map"' not in page and "quality maps" not in page


def _read_csv(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_the_score_spread_sits_beside_the_score_and_the_mean(tmp_path):
    rows = _rows(tmp_path / "in" / "a")
    for k, row in enumerate(rows):
        row["score_sd"] = 0.1 * (k + 1)
    (summary,) = _run(rows, tmp_path / "out").summaries
    table = _read_csv(tmp_path / "out" / summary["folder"] / "scores.csv")
    at = SCORES_COLUMNS.index("score") + 1
    assert list(table[0]) == [*SCORES_COLUMNS[:at], "score_sd", *SCORES_COLUMNS[at:]]
    assert [float(r["score_sd"]) for r in table] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert summary["score_sd"] == pytest.approx(0.25) and summary["worst"][0]["score_sd"] == pytest.approx(0.4)
    (index,) = _read_csv(tmp_path / "out" / "index.csv")
    assert list(index)[INDEX_COLUMNS.index("mean") + 1] == "score_sd" and float(index["score_sd"]) == 0.25
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<th>score SD</th>" in page and "0.00 ± 0.40" in page


def test_spreads_from_the_evaluator_outputs_reach_the_rows(tmp_path):
    """The evaluator's decollated outputs carry score_sd (configs/inference_uncertainty.json): the handler copies it
    into the rows the prediction report collected for that iteration."""
    report = PredictionReport(str(tmp_path), prefix="slice", only_best=False)
    handler = ExamReport(report, str(tmp_path), page=False)
    batches = [[{"name": "a"}, {"name": "b"}], [{"name": "c"}]]
    spreads = {"a": 0.5, "b": 0.0, "c": 1.5}

    def step(engine, batch):
        return [{"pred": torch.tensor([2.0]), "score_sd": torch.tensor([spreads[i["name"]]])} for i in batch]

    engine = Engine(step)
    report.attach(engine)
    handler.attach(engine)
    engine.run(batches, max_epochs=1)
    assert {r["name"]: r["score_sd"] for r in report.rows} == spreads
