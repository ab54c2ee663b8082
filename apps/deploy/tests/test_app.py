"""The Deploy app run as its users run it (``python app.py -i -o``, a subprocess of .venv-deploy), checked against
``tfkt-score`` of the core environment on the same files, checkpoint and preset."""

from __future__ import annotations

import csv
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import APP_DIR, N_SLICES, REPO_ROOT, write_slice

# The reference scorer lives in the core venv (`make venv`; `make test-deploy` builds it first).
TFKT_SCORE = Path(os.environ.get("TFKT_SCORE_COMMAND", REPO_ROOT / ".venv" / "bin" / "tfkt-score"))
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
TOLERANCE = 1e-5


def _big_stack() -> None:
    # Holoscan asks for a 32 MB stack (it warns of crashes below); the limit must be set before exec.
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = 32 * 1024 * 1024
    if soft != resource.RLIM_INFINITY and soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_STACK, (want, hard))


def run_app(inputs: Path, out: Path, checkpoint: Path, threshold: float | None = None) -> dict:
    """Run app.py; return its JSON."""
    env = {**os.environ, "TFKT_CHECKPOINT": str(checkpoint), "TFKT_NETWORK_PRESET": "hybrid_tiny", "TFKT_DEVICE": "cpu"}
    if threshold is not None:
        env["TFKT_THRESHOLD"] = repr(threshold)
    command = [sys.executable, str(APP_DIR / "app.py"), "-i", str(inputs), "-o", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, preexec_fn=_big_stack)
    assert done.returncode == 0, f"app.py failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads((out / "tfkt_scores.json").read_text())


def tfkt_scores(inputs: Path, out: Path, checkpoint: Path) -> dict[str, float]:
    """Per-slice scores of the core environment's ``tfkt-score``, by SOPInstanceUID."""
    if not TFKT_SCORE.exists():
        pytest.fail(f"{TFKT_SCORE} is absent: build the core venv (make venv) or set TFKT_SCORE_COMMAND")
    command = [str(TFKT_SCORE), str(inputs), "--out", str(out), "--checkpoint", str(checkpoint)]
    done = subprocess.run(
        [*command, "--network-preset", "hybrid_tiny", "--device", "cpu", "--backend", "torch"],
        capture_output=True,
        text=True,
    )
    # 3: scored, some files skipped (the synthetic study's MR slice and text file), in tfkt-score versions that say so.
    assert done.returncode in (0, 3), f"tfkt-score: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    scores = {}
    for table in sorted(out.glob("*/scores.csv")):
        with open(table, newline="") as handle:
            scores.update({row["sop_instance_uid"]: float(row["score"]) for row in csv.DictReader(handle)})
    assert scores, f"tfkt-score wrote no scores.csv under {out}"
    return scores


def read_sr(out: Path) -> pydicom.Dataset:
    (path,) = out.glob("tfkt_sr_*.dcm")
    return pydicom.dcmread(path)


def sr_numbers(sr: pydicom.Dataset, code: str) -> list[pydicom.Dataset]:
    items = [i for i in sr.ContentSequence if i.ValueType == "NUM"]
    return [i for i in items if i.ConceptNameCodeSequence[0].CodeValue == code]


def referenced_series(sr: pydicom.Dataset) -> dict[str, set[str]]:
    """SeriesInstanceUID -> SOPInstanceUIDs listed as the SR's evidence."""
    refs = {}
    for study in sr.CurrentRequestedProcedureEvidenceSequence:
        for series in study.ReferencedSeriesSequence:
            refs[series.SeriesInstanceUID] = {s.ReferencedSOPInstanceUID for s in series.ReferencedSOPSequence}
    return refs


def assert_same_scores(series: dict, reference: dict[str, float]) -> None:
    mine = {s["sop_instance_uid"]: s["score"] for s in series["slices"]}
    assert mine.keys() == reference.keys()
    worst = max(abs(mine[uid] - reference[uid]) for uid in reference)
    assert worst <= TOLERANCE, f"app and tfkt-score differ by up to {worst}"


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, synthetic_study, tiny_checkpoint) -> dict:
    """tfkt-score first, then the app with the median score as threshold, so that some slices are flagged."""
    work = tmp_path_factory.mktemp("synthetic")
    reference = tfkt_scores(synthetic_study["root"], work / "tfkt", tiny_checkpoint)
    threshold = statistics.median(reference.values())
    scores = run_app(synthetic_study["root"], work / "app", tiny_checkpoint, threshold)
    return {"reference": reference, "threshold": threshold, "scores": scores, "out": work / "app"}


def test_synthetic_series_scores_equal_tfkt_score(synthetic_run, synthetic_study):
    (series,) = synthetic_run["scores"]["series"]  # the MR slice and the text file are not scored
    assert series["series_instance_uid"] == synthetic_study["series_uid"]
    assert series["n_slices"] == N_SLICES and series["derived_uids"] == {}
    assert [s["sop_instance_uid"] for s in series["slices"]] == synthetic_study["sop_uids"]  # slice order, by z
    assert [s["instance_number"] for s in series["slices"]] == list(range(1, N_SLICES + 1))
    assert [s["z"] for s in series["slices"]] == [2.0 * k for k in range(N_SLICES)]
    assert_same_scores(series, synthetic_run["reference"])
    assert len(set(synthetic_run["reference"].values())) > 1, "the tiny model should score the slices differently"


def test_synthetic_json_has_mean_and_slices_below_threshold(synthetic_run):
    (series,) = synthetic_run["scores"]["series"]
    scores = [s["score"] for s in series["slices"]]
    threshold = synthetic_run["threshold"]
    assert series["mean"] == pytest.approx(statistics.fmean(scores), abs=1e-9)
    assert series["threshold"] == threshold == synthetic_run["scores"]["settings"]["threshold"]
    below = sorted(s["sop_instance_uid"] for s in series["slices"] if s["score"] < threshold)
    assert 0 < len(below) < N_SLICES
    assert (
        sorted(f["sop_instance_uid"] for f in series["flagged"])
        == below
        == sorted(f["sop_instance_uid"] for f in series["flagged"] if f["score"] < threshold)
    )
    assert series["n_flagged"] == len(below)


def test_synthetic_sr_references_the_series_and_carries_the_scores(synthetic_run, synthetic_study):
    (series,) = synthetic_run["scores"]["series"]
    sr = read_sr(synthetic_run["out"])
    assert (sr.Modality, sr.SOPClassUID) == ("SR", COMPREHENSIVE_SR)
    assert (sr.StudyInstanceUID, sr.PatientID) == ("1.2.3.4", "TFKT-TEST")  # the source's study and patient
    assert sr.SeriesInstanceUID != synthetic_study["series_uid"]  # the SR is a series of its own
    assert referenced_series(sr) == {synthetic_study["series_uid"]: set(synthetic_study["sop_uids"])}
    (mean,) = sr_numbers(sr, "IQA-SERIES-MEAN")
    assert float(mean.MeasuredValueSequence[0].NumericValue) == pytest.approx(series["mean"], abs=1e-6)
    flagged = sr_numbers(sr, "IQA-SLICE")
    by_uid = {item.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID: item for item in flagged}
    assert sorted(by_uid) == sorted(f["sop_instance_uid"] for f in series["flagged"])
    for f in series["flagged"]:
        value = float(by_uid[f["sop_instance_uid"]].MeasuredValueSequence[0].NumericValue)
        assert value == pytest.approx(f["score"], abs=1e-6)
    assert f"mean {series['mean']:.3f}" in sr.ContentSequence[0].TextValue


def test_shared_j2k_series_scores_equal_tfkt_score(tmp_path, shared_series, tiny_checkpoint):
    reference = tfkt_scores(shared_series, tmp_path / "tfkt", tiny_checkpoint)
    scores = run_app(shared_series, tmp_path / "app", tiny_checkpoint)
    (series,) = scores["series"]
    assert series["n_slices"] == 20
    assert_same_scores(series, reference)
    assert all(Path(s["source"]).parent == shared_series for s in series["slices"])  # the input, not the copies
    # This export has blank Study/Series/SOP UIDs: the app fills them, says so, and the SR points at those.
    assert sorted(k for ks in series["derived_uids"].values() for k in ks) == ["SeriesInstanceUID", "StudyInstanceUID"]
    sr = read_sr(tmp_path / "app")
    assert referenced_series(sr) == {series["series_instance_uid"]: set(reference)}
    (mean,) = sr_numbers(sr, "IQA-SERIES-MEAN")
    assert float(mean.MeasuredValueSequence[0].NumericValue) == pytest.approx(series["mean"], abs=1e-6)
    assert "derived by this app" in sr.ContentSequence[0].TextValue


@pytest.mark.parametrize("case", ["empty folder", "MR only", "absent"])
def test_nothing_to_score_ends_in_one_line_and_its_exit_status(tmp_path, tiny_checkpoint, case):
    inputs = tmp_path / "in"
    if case != "absent":
        inputs.mkdir()
    if case == "MR only":
        write_slice(inputs / "mr.dcm", np.zeros((8, 8)), series_uid="1.2.3", instance=1, z=0.0, modality="MR")
    env = {**os.environ, "TFKT_CHECKPOINT": str(tiny_checkpoint), "TFKT_NETWORK_PRESET": "hybrid_tiny"}
    command = [sys.executable, str(APP_DIR / "app.py"), "-i", str(inputs), "-o", str(tmp_path / "out")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, preexec_fn=_big_stack)
    expected = {
        "empty folder": (4, f"error: No study loaded from path {inputs}."),
        "MR only": (4, "error: no CT series selected: the input holds no DICOM series with Modality CT"),
        "absent": (2, f"error: input folder {inputs} does not exist"),
    }[case]
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == expected
    assert "Traceback" not in done.stderr
