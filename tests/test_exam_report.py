"""scripts.clinical.exam_report / outputs / report_page: the end-of-run handler on rows as a run collects them."""

import csv
import math

import numpy as np
import pytest
import tifffile
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
