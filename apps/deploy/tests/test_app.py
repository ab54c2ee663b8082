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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

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


def app_process(
    inputs: Path, out: Path, checkpoint: Path, threshold: float | str | None = None, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    """``python app.py -i inputs -o out`` (``prefix``: what runs app.py instead of the plain interpreter)."""
    env = {**os.environ, "TFKT_CHECKPOINT": str(checkpoint), "TFKT_NETWORK_PRESET": "hybrid_tiny", "TFKT_DEVICE": "cpu"}
    if threshold is not None:
        env["TFKT_THRESHOLD"] = threshold if isinstance(threshold, str) else repr(threshold)
    command = [*(prefix or [sys.executable]), str(APP_DIR / "app.py"), "-i", str(inputs), "-o", str(out)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, preexec_fn=_big_stack)


def run_app(inputs: Path, out: Path, checkpoint: Path, threshold: float | None = None, status: int = 0) -> dict:
    """Run app.py, check its exit status; return its JSON (with the run's log under ``"log"``)."""
    done = app_process(inputs, out, checkpoint, threshold)
    assert done.returncode == status, f"app.py: {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return {**json.loads((out / "tfkt_scores.json").read_text()), "log": done.stdout + done.stderr}


@dataclass
class Reference:
    """What the core environment's ``tfkt-score`` made of the same input."""

    scores: dict[str, float]  # per slice, by SOPInstanceUID
    skipped: list[tuple[str, str]]  # its skipped.csv: (path, reason)
    status: int


def tfkt_score(inputs: Path, out: Path, checkpoint: Path) -> Reference:
    if not TFKT_SCORE.exists():
        pytest.fail(f"{TFKT_SCORE} is absent: build the core venv (make venv) or set TFKT_SCORE_COMMAND")
    command = [str(TFKT_SCORE), str(inputs), "--out", str(out), "--checkpoint", str(checkpoint)]
    done = subprocess.run(
        [*command, "--network-preset", "hybrid_tiny", "--device", "cpu", "--backend", "torch"],
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 3), f"tfkt-score: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    scores = {}
    for table in sorted(out.glob("*/scores.csv")):
        scores.update({row["sop_instance_uid"]: float(row["score"]) for row in read_csv(table)})
    assert scores, f"tfkt-score wrote no scores.csv under {out}"
    return Reference(scores, [(r["path"], r["reason"]) for r in read_csv(out / "skipped.csv")], done.returncode)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def app_skipped(out: Path, scores: dict) -> list[tuple[str, str]]:
    """The app's skipped.csv rows, checked to be those of its JSON."""
    rows = [(r["path"], r["reason"]) for r in read_csv(out / "skipped.csv")]
    assert rows == [(s["path"], s["reason"]) for s in scores["skipped"]]
    return rows


def assert_logged(skipped: list[tuple[str, str]], log: str) -> None:
    for path, reason in skipped:
        assert f"skipped {path}: {reason}" in log


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
    reference = tfkt_score(synthetic_study["root"], work / "tfkt", tiny_checkpoint)
    threshold = statistics.median(reference.scores.values())
    # 3, as tfkt-score's: the MR slice and the text file beside the series are skipped.
    scores = run_app(synthetic_study["root"], work / "app", tiny_checkpoint, threshold, status=3)
    return {"reference": reference, "threshold": threshold, "scores": scores, "out": work / "app"}


def test_synthetic_series_scores_equal_tfkt_score(synthetic_run, synthetic_study):
    (series,) = synthetic_run["scores"]["series"]  # the MR slice and the text file are not scored
    assert series["series_instance_uid"] == synthetic_study["series_uid"]
    assert series["n_slices"] == N_SLICES and series["derived_uids"] == {}
    assert [s["sop_instance_uid"] for s in series["slices"]] == synthetic_study["sop_uids"]  # slice order, by z
    assert [s["instance_number"] for s in series["slices"]] == list(range(1, N_SLICES + 1))
    assert [s["z"] for s in series["slices"]] == [2.0 * k for k in range(N_SLICES)]
    assert_same_scores(series, synthetic_run["reference"].scores)
    assert len(set(synthetic_run["reference"].scores.values())) > 1, "the tiny model should score the slices apart"


def test_synthetic_skips_are_those_of_tfkt_score(synthetic_run, synthetic_study):
    skipped = app_skipped(synthetic_run["out"], synthetic_run["scores"])
    root = synthetic_study["root"]
    assert [(Path(p), r.split(" (")[0]) for p, r in skipped] == [
        (root / "mr.dcm", "not CT"),
        (root / "notes.txt", "not DICOM"),
    ]
    assert skipped == synthetic_run["reference"].skipped
    assert_logged(skipped, synthetic_run["scores"]["log"])


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
    reference = tfkt_score(shared_series, tmp_path / "tfkt", tiny_checkpoint)
    scores = run_app(shared_series, tmp_path / "app", tiny_checkpoint, status=reference.status)
    assert app_skipped(tmp_path / "app", scores) == reference.skipped
    (series,) = scores["series"]
    assert series["n_slices"] == 20
    assert_same_scores(series, reference.scores)
    assert all(Path(s["source"]).parent == shared_series for s in series["slices"])  # the input, not the copies
    # This export has blank Study/Series/SOP UIDs: the app fills them, says so, and the SR points at those.
    assert sorted(k for ks in series["derived_uids"].values() for k in ks) == ["SeriesInstanceUID", "StudyInstanceUID"]
    sr = read_sr(tmp_path / "app")
    assert referenced_series(sr) == {series["series_instance_uid"]: set(reference.scores)}
    (mean,) = sr_numbers(sr, "IQA-SERIES-MEAN")
    assert float(mean.MeasuredValueSequence[0].NumericValue) == pytest.approx(series["mean"], abs=1e-6)
    assert "derived by this app" in sr.ContentSequence[0].TextValue


@pytest.mark.parametrize("case", ["empty folder", "MR only", "scout only", "absent"])
def test_nothing_to_score_ends_in_one_line_and_its_exit_status(tmp_path, tiny_checkpoint, case):
    inputs, out = tmp_path / "in", tmp_path / "out"
    if case != "absent":
        inputs.mkdir()
    if case == "MR only":
        write_slice(inputs / "mr.dcm", np.zeros((8, 8)), series_uid="1.2.3", instance=1, z=0.0, modality="MR")
    if case == "scout only":  # Modality CT: selected by the SDK, then every file skipped by the bundle's reader
        scout = inputs / "scout.dcm"
        write_slice(scout, np.zeros((8, 8)), series_uid="1.2.3", instance=1, z=0.0, ImageType="LOCALIZER")
    done = app_process(inputs, out, tiny_checkpoint)
    expected = {
        "empty folder": (4, f"error: No study loaded from path {inputs}."),
        "MR only": (4, "error: no CT series selected: the input holds no DICOM series with Modality CT"),
        "scout only": (4, f"error: no series could be scored: 2 items skipped, reasons in {out / 'skipped.csv'}"),
        "absent": (2, f"error: input folder {inputs} does not exist"),
    }[case]
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == expected
    if case in ("MR only", "scout only"):  # what was skipped is listed all the same
        reasons = [reason for _, reason in app_skipped(out, json.loads((out / "tfkt_scores.json").read_text()))]
        assert (
            reasons
            == {
                "MR only": ["not CT (Modality 'MR')"],
                "scout only": [
                    "localizer (scout) image, not an axial slice",
                    "series 1.2.3: no usable CT slice in its 1 file (localizer (scout) image, not an axial slice)",
                ],
            }[case]
        )
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def scout_run(tmp_path_factory, scout_study, tiny_checkpoint) -> dict:
    work = tmp_path_factory.mktemp("scout")
    reference = tfkt_score(scout_study["root"], work / "tfkt", tiny_checkpoint)
    scores = run_app(scout_study["root"], work / "app", tiny_checkpoint, status=3)
    return {"reference": reference, "scores": scores, "out": work / "app", "skipped": app_skipped(work / "app", scores)}


def test_scout_series_is_skipped_with_its_reason_and_the_axial_series_scored(scout_run, scout_study):
    assert scout_run["reference"].status == 3
    (series,) = scout_run["scores"]["series"]
    assert series["series_instance_uid"] == scout_study["axial_uid"]
    assert_same_scores(series, scout_run["reference"].scores)
    skipped = scout_run["skipped"]
    localizer = "localizer (scout) image, not an axial slice"
    assert [(str(path), localizer) for path in scout_study["scouts"]] == [s for s in skipped if s[1] == localizer]
    series_rows = [s for s in skipped if s[1].startswith("series ")]
    assert series_rows == [
        (
            str(scout_study["root"]),
            f"series {scout_study['scout_uid']}: no usable CT slice in its 2 files ({localizer})",
        )
    ]
    # Each file and slice as tfkt-score lists it; the app adds the series it selected but could not score.
    assert [s for s in skipped if s not in series_rows] == scout_run["reference"].skipped
    assert_logged(skipped, scout_run["scores"]["log"])
    assert [p.name for p in scout_run["out"].glob("tfkt_sr_*.dcm")] == [f"tfkt_sr_{scout_study['axial_uid']}.dcm"]


def test_nan_slice_is_skipped_with_its_reason(scout_run, scout_study):
    (series,) = scout_run["scores"]["series"]
    uids = scout_study["sop_uids"]
    assert series["n_slices"] == 3 and [s["sop_instance_uid"] for s in series["slices"]] == uids[:2] + uids[3:]
    nan_rows = [s for s in scout_run["skipped"] if "NaN" in s[1]]
    assert nan_rows == [(f"{scout_study['nan_slice']}#2", "100 NaN or infinite pixel values")]


@pytest.mark.parametrize("case", ["output is a file", "no checkpoint", "threshold not a number"])
def test_set_up_mistakes_end_in_one_line_before_any_work(tmp_path, synthetic_study, tiny_checkpoint, case):
    out = tmp_path / "out"
    if case == "output is a file":
        out.write_text("a file where the output folder should be")
    checkpoint = tmp_path / "absent.pt" if case == "no checkpoint" else tiny_checkpoint
    threshold = "two" if case == "threshold not a number" else None
    done = app_process(synthetic_study["root"], out, checkpoint, threshold)
    expected = {
        "output is a file": f"error: cannot write outputs to {out}: File exists",
        "no checkpoint": f"error: checkpoint {checkpoint} does not exist (set TFKT_CHECKPOINT or pass -m)",
        "threshold not a number": "error: TFKT_THRESHOLD='two' is not a number (a score on the 0-4 scale, e.g. 2.0)",
    }[case]
    assert (done.returncode, done.stderr.strip().splitlines()) == (2, [expected])
    if case == "output is a file":
        assert out.read_text() == "a file where the output folder should be"
    else:
        assert not (out / "tfkt_scores.json").exists()


# pydicom's decoder of the series' encoding, unavailable, as tests/test_dicom.py makes it; then app.py as a script.
WITHOUT_DECODER = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
import scripts.ctio.dicom_pixels as px

class Unavailable:
    is_available = False
    missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"]

px.get_decoder = lambda uid: Unavailable()
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_missing_decoder_ends_in_one_line_naming_the_package(tmp_path, tiny_checkpoint):
    inputs = tmp_path / "j2k"
    inputs.mkdir()
    for k in range(2):
        path = inputs / f"s{k}.dcm"
        write_slice(path, np.full((64, 64), 40.0), series_uid="1.2.3.5", instance=k + 1, z=2.0 * k)
        dataset = pydicom.dcmread(path)
        dataset.compress(JPEG2000Lossless)
        dataset.save_as(path, enforce_file_format=True)
    prefix = [sys.executable, "-c", WITHOUT_DECODER, str(APP_DIR)]
    done = app_process(inputs, tmp_path / "out", tiny_checkpoint, prefix=prefix)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot decode JPEG 2000") and "pip install pylibjpeg-openjpeg" in last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "tfkt_scores.json").exists()


def test_released_weights_are_the_default_of_app_and_tfkt_score(tmp_path, synthetic_study):
    """With no checkpoint and no preset given, both score with the bundle's released models/model.pt, the same way."""
    released = REPO_ROOT / "tfkt_bundle" / "models" / "model.pt"
    assert released.is_file()
    env = {k: v for k, v in os.environ.items() if k not in ("TFKT_CHECKPOINT", "TFKT_NETWORK_PRESET")}
    command = [sys.executable, str(APP_DIR / "app.py"), "-i", str(synthetic_study["root"]), "-o", str(tmp_path / "app")]
    done = subprocess.run(
        command, env={**env, "TFKT_DEVICE": "cpu"}, capture_output=True, text=True, timeout=600, preexec_fn=_big_stack
    )
    # 3: the MR slice and the text file beside the series are skipped, as in the other runs.
    assert done.returncode == 3, f"app.py: {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads((tmp_path / "app" / "tfkt_scores.json").read_text())
    assert result["settings"]["checkpoint"] == str(released)
    (series,) = result["series"]
    scored = subprocess.run(
        [str(TFKT_SCORE), str(synthetic_study["root"]), "--out", str(tmp_path / "tfkt"), "--backend", "torch"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert scored.returncode in (0, 3), scored.stderr[-3000:]
    (table,) = (tmp_path / "tfkt").glob("*/scores.csv")
    assert_same_scores(series, {r["sop_instance_uid"]: float(r["score"]) for r in read_csv(table)})
