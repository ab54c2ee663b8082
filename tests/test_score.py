"""``tfkt-score`` (scripts.score) on a small DICOM study with the tiny network: per-series outputs, index, the
HTML report, the same scores as the inference workflow, and exam comparison."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import monai.bundle.workflows  # noqa: F401 - see below
import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.uid import generate_uid
from scipy.ndimage import gaussian_filter

from scripts.clinical.outputs import INDEX_COLUMNS, SCORES_COLUMNS
from scripts.ctio.slices import read_ct_slice
from scripts.ctio.window import apply_hu_window
from scripts.nets.networks import create_network
from scripts.score import decoding_workers, main

from conftest import BUNDLE_ROOT
from dicom_helpers import write_ct_slice
from model_helpers import noise_scorer_checkpoint

# MONAI's loggers get a handler on sys.stdout when first imported: imported here, that is the session's stream, not
# the first test's capsys one, which is closed after that test ("Logging error" on stderr in the tests after it).
TFKT_SCORE = Path(sys.executable).parent / "tfkt-score"  # installed by `make venv` (pip install -e .)
DOSES = {"low dose": 2.5, "mid dose": 10.0, "full dose": 20.0}  # CTDIvol (mGy) per series
N_SLICES, SIZE = 6, 64
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return noise_scorer_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", SIZE)


def _phantom_hu(rng, noise_sd: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    body = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2
    return np.where(body, 40.0, -1000.0) + rng.normal(0, noise_sd, (SIZE, SIZE))


def _write_series(folder: Path, hu_slices, description: str, ctdi: float | None, positions=True, uid=None) -> Path:
    folder.mkdir(parents=True)
    uid = uid or generate_uid()
    extra = {"KVP": 120, "Manufacturer": "ACME", "ConvolutionKernel": "B30f", "SliceThickness": 2.0}
    for k, hu in enumerate(hu_slices):
        tags = {**extra, **({"CTDIvol": ctdi, "Exposure": int(ctdi * 10) + k} if ctdi is not None else {})}
        stored = np.clip(np.round(hu) + 1024, 0, 4095)
        position = (0.0, 0.0, 2.0 * k) if positions else None
        # Written in reverse file order: slice order must come from the positions, not the names.
        write_ct_slice(
            folder / f"im{N_SLICES - k:02d}.dcm", stored, series_uid=uid, instance=k + 1, position=position,
            description=description, extra=tags,
        )  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Three series of one study at three doses (noise grows as dose falls), and a file that is not DICOM."""
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    for description, ctdi in DOSES.items():
        noise = 15.0 * np.sqrt(20.0 / ctdi)
        slices = [_phantom_hu(rng, noise) for _ in range(N_SLICES)]
        _write_series(root / "exam" / description.replace(" ", "_"), slices, description, ctdi)
    (root / "exam" / "notes.txt").write_text("not an image")
    return root / "exam"


def _score(tmp_path, inputs, checkpoint, *flags, expect: int = 0) -> Path:
    out = tmp_path / "out"
    argv = [*map(str, inputs), "--out", str(out), "--checkpoint", str(checkpoint), "--network-preset", "hybrid_tiny"]
    assert main([*argv, *flags]) == expect
    return out


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_scores_every_series_into_its_own_folder_with_an_index(tmp_path, study, tiny_checkpoint, capsys):
    out = _score(tmp_path, [study], tiny_checkpoint, expect=3)  # notes.txt is skipped
    index = _csv(out / "index.csv")
    assert sorted(r["series_description"] for r in index) == sorted(DOSES)
    for row in index:
        assert float(row["ctdi_vol"]) == pytest.approx(DOSES[row["series_description"]])
        assert (row["kvp"], row["manufacturer"], row["convolution_kernel"]) == ("120", "ACME", "B30f")
        folder = out / row["folder"]
        scores = _csv(folder / "scores.csv")
        assert [float(r["z"]) for r in scores] == [2.0 * k for k in range(N_SLICES)]  # slice order, not file order
        assert [int(r["instance_number"]) for r in scores] == list(range(1, N_SLICES + 1))
        assert all(Path(r["file"]).parent == study / row["series_description"].replace(" ", "_") for r in scores)
        values = np.array([float(r["score"]) for r in scores])
        summary = json.loads((folder / "summary.json").read_text())
        assert list(scores[0]) == list(SCORES_COLUMNS) and list(row) == list(INDEX_COLUMNS)  # no score_sd
        assert "score_sd" not in summary and "score_sd" not in summary["worst"][0]
        assert summary["n_slices"] == N_SLICES == int(row["n_slices"])
        assert summary["mean"] == pytest.approx(values.mean()) == pytest.approx(float(row["mean"]))
        assert summary["median"] == pytest.approx(np.median(values))
        assert summary["p10"] == pytest.approx(np.percentile(values, 10))
        assert [w["score"] for w in summary["worst"]] == pytest.approx(sorted(values)[:5])
        # Exposure differs slice by slice (tube-current modulation): the series reports its mean.
        assert summary["acquisition"]["exposure_mas"] == pytest.approx(int(DOSES[row["series_description"]] * 10) + 2.5)
        assert (folder / "scores.png").read_bytes().startswith(PNG)
    printed = capsys.readouterr().out
    assert all(re.search(rf"{name}\s+{N_SLICES}\s", printed) for name in DOSES)


def test_threshold_flags_the_slices_below_it(tmp_path, study, tiny_checkpoint):
    first = _score(tmp_path / "a", [study / "mid_dose"], tiny_checkpoint)
    (row,) = _csv(first / "index.csv")
    values = sorted(float(r["score"]) for r in _csv(first / row["folder"] / "scores.csv"))
    threshold = (values[2] + values[3]) / 2  # three slices below
    second = _score(tmp_path / "b", [study / "mid_dose"], tiny_checkpoint, "--threshold", str(threshold))
    summary = json.loads((second / row["folder"] / "summary.json").read_text())
    assert summary["n_below"] == 3 and summary["threshold"] == threshold
    assert sorted(s["score"] for s in summary["below"]) == pytest.approx(values[:3])


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_page_is_self_contained_with_plots_thumbnails_and_the_dose_view(tmp_path, study, tiny_checkpoint):
    out = _score(tmp_path, [study], tiny_checkpoint, expect=3)
    page = (out / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', page), "every image and link is inside the page"
    images = _images(page)
    # per series a score plot and the five worst slices, each with its quality map; the dose-quality plot
    assert len(images) == len(DOSES) * (1 + 5 + 5) + 1
    assert all(image.startswith(PNG) for image in images)
    assert (out / "dose_quality.png").read_bytes() in images
    shown = [Image.open(io.BytesIO(image)) for image in images if Image.open(io.BytesIO(image)).size == (SIZE, SIZE)]
    assert [image.mode for image in shown] == ["L", "RGB"] * len(DOSES) * 5  # thumbnail, then its map
    for name in DOSES:
        assert name in page


def test_dose_view_needs_three_series_with_ctdivol(tmp_path, study, tiny_checkpoint):
    out = _score(tmp_path, [study / "low_dose", study / "full_dose"], tiny_checkpoint)
    assert not (out / "dose_quality.png").exists()
    assert len(_images((out / "report.html").read_text())) == 2 * (1 + 5 + 5)


@pytest.mark.parametrize(
    "backend, configs",
    [("torch", "configs/inference.json"), ("openvino", "['configs/inference.json','configs/inference_openvino.json']")],
)
def test_same_scores_as_the_inference_workflow(tmp_path, study, tiny_checkpoint, backend, configs):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the OpenVINO backend is the optional 'export' extra")
    flags = ("--batch-size", "4", "--workers", "2", "--backend", backend)
    out = _score(tmp_path / "score", [study], tiny_checkpoint, *flags, expect=3)
    workflow_out = tmp_path / "workflow"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", configs,
        "--dataset_dir", str(study), "--output_dir", str(workflow_out), "--ckpt_path", str(tiny_checkpoint),
        "--network_preset", "hybrid_tiny",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = {r["sop_instance_uid"]: float(r["prediction"]) for r in _csv(workflow_out / "slice_predictions.csv")}
    got = {}
    for row in _csv(out / "index.csv"):
        got.update({r["sop_instance_uid"]: float(r["score"]) for r in _csv(out / row["folder"] / "scores.csv")})
    assert len(expected) == len(DOSES) * N_SLICES and got.keys() == expected.keys()
    assert max(abs(got[k] - expected[k]) for k in expected) < 1e-5
    for ours, theirs in zip(_csv(out / "index.csv"), _csv(workflow_out / "index.csv"), strict=True):  # same writers
        assert ours.keys() == theirs.keys()
        for key in ours:
            same = ours[key] == theirs[key] or float(ours[key]) == pytest.approx(float(theirs[key]), abs=1e-5)
            assert same, (key, ours[key], theirs[key])


def test_network_threads_leave_the_scores_alone(tmp_path, study, tiny_checkpoint, capsys):
    threads = torch.get_num_threads()
    try:
        default = _score(tmp_path / "default", [study], tiny_checkpoint, expect=3)
        one = _score(tmp_path / "one", [study], tiny_checkpoint, "--threads", "1", "--workers", "1", expect=3)
        assert torch.get_num_threads() == 1  # the workflow set the network's threads
    finally:
        torch.set_num_threads(threads)
    for row in _csv(default / "index.csv"):
        scores = [_csv(out / row["folder"] / "scores.csv") for out in (default, one)]
        assert [r["sop_instance_uid"] for r in scores[0]] == [r["sop_instance_uid"] for r in scores[1]]
        assert [float(r["score"]) for r in scores[0]] == pytest.approx([float(r["score"]) for r in scores[1]], abs=1e-5)
    capsys.readouterr()
    assert main([str(study), "--out", str(tmp_path / "o"), "--checkpoint", str(tiny_checkpoint), "--threads", "0"]) == 2
    assert capsys.readouterr().err == "error: ValueError: --threads must be at least 1\n"


def test_missing_checkpoint_and_input_are_usage_errors(tmp_path, study, capsys):
    assert main([str(study), "--out", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "absent.pt")]) == 2
    assert "absent.pt does not exist: make one with `make demo`" in capsys.readouterr().err
    checkpoint = tmp_path / "m.pt"
    checkpoint.write_bytes(b"")
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--checkpoint", str(checkpoint)]) == 2
    assert capsys.readouterr().err == f"error: FileNotFoundError: {tmp_path / 'nowhere'} does not exist\n"


def test_skipped_items_are_listed_counted_and_set_the_exit_code(tmp_path, study, tiny_checkpoint, capsys):
    (tmp_path / "empty").mkdir()
    out = _score(tmp_path, [study, tmp_path / "empty"], tiny_checkpoint, "--workers", "2", expect=3)
    skipped = _csv(out / "skipped.csv")
    assert [(Path(r["path"]).name, r["reason"]) for r in skipped] == [
        ("notes.txt", "not DICOM (no 'DICM' file marker)"),
        ("empty", "no CT DICOM slices found (0 files, each skipped)"),
    ]  # each once, though two workers read the headers
    assert len(_csv(out / "index.csv")) == len(DOSES)  # the rest is scored
    assert "Not scored (2)" in (out / "report.html").read_text()
    assert "2 items skipped" in capsys.readouterr().out
    assert not list(out.glob(".skipped-*")), "the run's skip log is removed once written"


def test_nothing_scorable_is_its_own_exit_code(tmp_path, tiny_checkpoint, capsys):
    folder = tmp_path / "mr"
    folder.mkdir()
    write_ct_slice(folder / "mr.dcm", np.zeros((8, 8)), series_uid="1.2", instance=1, position=None, modality="MR")
    out = _score(tmp_path, [folder], tiny_checkpoint, expect=4)
    assert [r["reason"] for r in _csv(out / "skipped.csv")][0] == "not CT (Modality 'MR')"
    assert capsys.readouterr().err.startswith("error: no slice was scored (2 items skipped")
    assert not (out / "index.csv").exists()


def test_installed_command_reports_a_bad_input_in_one_line(tmp_path, tiny_checkpoint):
    assert TFKT_SCORE.is_file(), "tfkt-score is installed by `make venv`"
    command = [
        str(TFKT_SCORE),
        str(tmp_path / "nowhere"),
        "--out",
        str(tmp_path / "o"),
        "--checkpoint",
        str(tiny_checkpoint),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == f"error: FileNotFoundError: {tmp_path / 'nowhere'} does not exist\n"
    usage = subprocess.run([str(TFKT_SCORE), "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "--threshold" in usage.stdout and "--backend" in usage.stdout
    assert "3  scored, but some inputs, files or slices were skipped" in usage.stdout
    assert "--uncertainty" in usage.stdout and "the score is then their mean" in " ".join(usage.stdout.split())


def _eager(checkpoint: Path) -> torch.nn.Module:
    network = create_network("hybrid_tiny")
    network.load_state_dict(torch.load(checkpoint, weights_only=True))
    return network.eval()


def _export_onnx(checkpoint: Path, onnx: Path) -> Path:
    pytest.importorskip("onnxruntime", reason="the ONNX backend is the optional 'export' extra")
    torch.onnx.export(
        _eager(checkpoint), (torch.rand(2, 1, SIZE, SIZE),), str(onnx), input_names=["image"], output_names=["pred"],
        dynamic_axes={"image": [0, 2, 3], "pred": [0]}, dynamo=True,
    )  # fmt: skip
    return onnx


def test_onnx_backend_gives_the_torch_scores(tmp_path, study, tiny_checkpoint):
    onnx = _export_onnx(tiny_checkpoint, tmp_path / "model.onnx")
    eager = _score(tmp_path / "torch", [study / "low_dose"], tiny_checkpoint, "--backend", "torch")
    exported = _score(tmp_path / "onnx", [study / "low_dose"], onnx, "--backend", "onnx", "--batch-size", "3")
    (row,) = _csv(eager / "index.csv")
    a = [float(r["score"]) for r in _csv(eager / row["folder"] / "scores.csv")]
    b = [float(r["score"]) for r in _csv(exported / row["folder"] / "scores.csv")]
    np.testing.assert_allclose(b, a, atol=1e-4)
    page = (exported / "report.html").read_text()  # the ONNX model has no torch tokens to map: said once
    assert page.count("No per-region quality maps: OnnxRuntimeNetwork is not a torch network") == 1
    assert 'class="map"' not in page


# --------------------------------------------------------------------------------------------------------------------
# --uncertainty and the report's quality maps


@torch.no_grad()
def _eight_view_scores(network: torch.nn.Module, dicom: str) -> np.ndarray:
    """The slice's scores over its 8 flips and rotations, each view scored on its own by the eager network."""
    hu, _ = read_ct_slice(dicom, 0, None)
    image = apply_hu_window(hu)
    views = [np.rot90(base, k).copy() for base in (image, np.fliplr(image)) for k in range(4)]
    return np.array([float(network(torch.from_numpy(v)[None, None])) for v in views])


@pytest.mark.parametrize("backend", ["torch", "openvino", "onnx"])
def test_uncertainty_scores_the_mean_of_eight_views_and_writes_their_sd(tmp_path, study, tiny_checkpoint, backend):
    pytest.importorskip({"openvino": "openvino", "onnx": "onnxruntime"}.get(backend, "torch"))
    weights = _export_onnx(tiny_checkpoint, tmp_path / "model.onnx") if backend == "onnx" else tiny_checkpoint
    flags = ("--uncertainty", "--backend", backend, "--batch-size", "4", "--precision", "f32")  # eager's scores
    out = _score(tmp_path, [study / "low_dose"], weights, *flags)
    (row,) = _csv(out / "index.csv")
    table = _csv(out / row["folder"] / "scores.csv")
    at = SCORES_COLUMNS.index("score") + 1
    assert list(table[0]) == [*SCORES_COLUMNS[:at], "score_sd", *SCORES_COLUMNS[at:]]
    network, tolerance = _eager(tiny_checkpoint), 1e-5 if backend == "torch" else 1e-4
    for slice_row in table:
        views = _eight_view_scores(network, slice_row["file"])
        assert float(slice_row["score"]) == pytest.approx(views.mean(), abs=tolerance)
        assert float(slice_row["score_sd"]) == pytest.approx(views.std(), abs=tolerance)
        assert float(slice_row["score_sd"]) > 1e-3
    spreads = [float(r["score_sd"]) for r in table]
    summary = json.loads((out / row["folder"] / "summary.json").read_text())
    assert summary["score_sd"] == pytest.approx(np.mean(spreads)) == pytest.approx(float(row["score_sd"]))
    assert list(row)[INDEX_COLUMNS.index("mean") + 1] == "score_sd"
    assert " ± " in (out / "report.html").read_text()


def test_uncertainty_needs_the_local_engine(tmp_path, study, tiny_checkpoint, capsys):
    argv = [str(study), "--out", str(tmp_path / "o"), "--checkpoint", str(tiny_checkpoint), "--uncertainty"]
    assert main([*argv, "--engine", "ray"]) == 2
    assert capsys.readouterr().err == "error: ValueError: --uncertainty runs with --engine local only\n"


def test_quality_maps_can_be_left_out(tmp_path, study, tiny_checkpoint):
    out = _score(tmp_path, [study / "low_dose"], tiny_checkpoint, "--no-quality-maps")
    page = (out / "report.html").read_text()
    assert len(_images(page)) == 1 + 5 and 'class="map"' not in page and "quality maps" not in page


# --------------------------------------------------------------------------------------------------------------------
# compare


def _read_hu(folder: Path) -> list[np.ndarray]:
    import pydicom

    files = sorted(folder.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    return [pydicom.dcmread(p).pixel_array.astype(float) - 1024 for p in files]


def _compare(tmp_path, before, after, checkpoint) -> Path:
    out = tmp_path / "cmp"
    argv = ["compare", str(before), str(after), "--out", str(out), "--checkpoint", str(checkpoint)]
    assert main([*argv, "--network-preset", "hybrid_tiny", "--n-boot", "500"]) == 0
    return out


@pytest.mark.parametrize("change", ["smoothed", "noised"])
def test_compare_pairs_a_series_with_its_processed_copy(tmp_path, study, tiny_checkpoint, change, capsys):
    rng = np.random.default_rng(1)
    hu = _read_hu(study / "mid_dose")
    processed = [gaussian_filter(s, 1.5) if change == "smoothed" else s + rng.normal(0, 60, s.shape) for s in hu]
    after = _write_series(tmp_path / change, processed, f"mid dose {change}", 10.0)  # new UIDs, same positions
    out = _compare(tmp_path, study / "mid_dose", after, tiny_checkpoint)
    result = json.loads((out / "comparison.json").read_text())
    assert (result["method"], result["n_pairs"], result["unpaired_before"]) == ("position", N_SLICES, 0)
    before_scores = {float(r["z"]): float(r["score"]) for r in _series_scores(out / "before")}
    after_scores = {float(r["z"]): float(r["score"]) for r in _series_scores(out / "after")}
    gains = np.array([after_scores[z] - before_scores[z] for z in before_scores])
    assert result["mean_gain"] == pytest.approx(gains.mean(), abs=1e-6)
    assert result["share_improved"] == pytest.approx(np.mean(gains > 0))
    assert result["gain_ci_low"] <= result["mean_gain"] <= result["gain_ci_high"]
    assert abs(gains.mean()) > 1e-4, "the copy scores differently"
    rows = _csv(out / "comparison.csv")
    assert [float(r["difference"]) for r in rows] == pytest.approx(list(gains), abs=1e-6)
    assert (out / "comparison.png").read_bytes().startswith(PNG)
    assert f"{result['mean_gain']:+.3f}" in capsys.readouterr().out


def _series_scores(out: Path) -> list[dict]:
    (row,) = _csv(out / "index.csv")
    return _csv(out / row["folder"] / "scores.csv")


def test_compare_without_positions_pairs_by_order_and_refuses_unequal_counts(tmp_path, study, tiny_checkpoint):
    hu = _read_hu(study / "mid_dose")
    before = _write_series(tmp_path / "before", hu, "no positions", None, positions=False)
    after = _write_series(tmp_path / "after", [gaussian_filter(s, 1.0) for s in hu], "no positions", None, False)
    result = json.loads((_compare(tmp_path / "a", before, after, tiny_checkpoint) / "comparison.json").read_text())
    assert (result["method"], result["n_pairs"]) == ("order", N_SLICES)
    shorter = _write_series(tmp_path / "shorter", hu[:4], "no positions", None, positions=False)
    with pytest.raises(ValueError, match="cannot pair by order: before has 6 slices, after 4"):
        _compare(tmp_path / "b", before, shorter, tiny_checkpoint)


def test_an_output_folder_that_cannot_be_written_fails_before_scoring(
    tmp_path, study, tiny_checkpoint, monkeypatch, capsys
):
    import errno
    import shutil

    import scripts.utils.paths

    (tmp_path / "file").write_text("")
    argv = [str(study), "--checkpoint", str(tiny_checkpoint), "--network-preset", "hybrid_tiny"]
    assert main([*argv, "--out", str(tmp_path / "file" / "out")]) == 2  # a file where a folder should be
    assert capsys.readouterr().err.startswith(f"error: OSError: cannot write outputs to {tmp_path / 'file' / 'out'}")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scripts.utils.paths.os, "fsync", full)
    assert main([*argv, "--out", str(tmp_path / "full")]) == 2
    assert "cannot write outputs to" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setattr(
        scripts.utils.paths.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20)
    )
    assert main([*argv, "--out", str(tmp_path / "almost_full")]) == 2
    assert "only 1 MiB free (need 64)" in capsys.readouterr().err
    assert not list((tmp_path / "almost_full").iterdir()), "nothing scored, nothing written"


def test_an_interrupted_run_resumes_without_reading_finished_series_again(
    tmp_path, study, tiny_checkpoint, monkeypatch
):
    import scripts.clinical.exam_report as exam_report
    import scripts.ctio.dicom_pixels as dicom_pixels

    full = _score(tmp_path / "full", [study], tiny_checkpoint, expect=3)
    write_series = exam_report.ExamReport._write_series

    def interrupt_after_the_first_series(self, key, rows):
        if self.written:
            raise KeyboardInterrupt  # Ctrl-C while the second series is being written
        write_series(self, key, rows)

    monkeypatch.setattr(exam_report.ExamReport, "_write_series", interrupt_after_the_first_series)
    cut = _score(tmp_path / "cut", [study], tiny_checkpoint, "--workers", "0", expect=130)
    assert len(list(cut.glob("*/summary.json"))) == 1 and not (cut / "index.csv").exists()
    monkeypatch.undo()
    decoded = []
    read = dicom_pixels.read_dicom_hu
    monkeypatch.setattr(dicom_pixels, "read_dicom_hu", lambda path, *args: decoded.append(path) or read(path, *args))
    _score(tmp_path / "cut", [study], tiny_checkpoint, "--workers", "0", "--resume", expect=3)
    assert len(decoded) == (len(DOSES) - 1) * N_SLICES  # the finished series is not decoded again
    resumed, expected = _csv(cut / "index.csv"), _csv(full / "index.csv")
    assert sorted(r["folder"] for r in resumed) == sorted(r["folder"] for r in expected)
    by_folder = {r["folder"]: r for r in expected}
    for row in resumed:
        assert float(row["mean"]) == pytest.approx(float(by_folder[row["folder"]]["mean"]), abs=1e-6)
    assert [Path(r["path"]).name for r in _csv(cut / "skipped.csv")] == ["notes.txt"]
    assert len(_images((cut / "report.html").read_text())) == len(DOSES) * (1 + 5 + 5) + 1


def test_damaged_and_unrescaled_files_are_skipped_and_their_series_scored(tmp_path, study, tiny_checkpoint):
    import shutil

    import pydicom

    folder = tmp_path / "series"
    shutil.copytree(next(p for p in study.iterdir() if p.is_dir()), folder)
    first, second = sorted(folder.glob("*.dcm"))[:2]
    (folder / "cut.dcm").write_bytes(first.read_bytes()[:200])
    raw = pydicom.dcmread(second)
    raw.SOPInstanceUID = raw.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del raw.RescaleSlope, raw.RescaleIntercept
    raw.save_as(folder / "raw.dcm")
    out = _score(tmp_path, [folder], tiny_checkpoint, expect=3)
    assert sorted((Path(r["path"]).name, r["reason"]) for r in _csv(out / "skipped.csv")) == [
        ("cut.dcm", "file cut short: it ends inside its file meta header, at byte 200"),
        ("raw.dcm", "no RescaleSlope/RescaleIntercept: stored values are not Hounsfield units"),
    ]
    (row,) = _csv(out / "index.csv")
    assert int(row["n_slices"]) == N_SLICES
    assert "Not scored (2)" in (out / "report.html").read_text()


def test_uncompressed_dicom_decodes_inline_and_anything_else_beside_the_network(tmp_path, study):
    import pydicom

    assert decoding_workers([study]) == 0  # uncompressed: the network gets every core
    packed = pydicom.dcmread(next((study / "low_dose").glob("*.dcm")))
    packed.compress(pydicom.uid.JPEG2000Lossless)
    packed.save_as(tmp_path / "packed.dcm")
    assert decoding_workers([study, tmp_path / "packed.dcm"]) == 1
    (tmp_path / "volume.nii.gz").write_bytes(b"")
    assert decoding_workers([tmp_path / "volume.nii.gz"]) == 1
