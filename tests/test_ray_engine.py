"""``tfkt-score --engine ray`` (scripts.scale): series found on the driver from headers, scored by Ray Data workers
holding one model each, written by the local engine's writers. The end-to-end test runs the installed command on a
2-CPU Ray instance, kills a worker mid-run, and checks every series is there once with the local engine's scores."""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from pydicom.uid import generate_uid

from scripts.ctio.slices import SLICE_KEYS, iter_ct_slices
from scripts.nets.networks import create_network
from scripts.scale import MISSING_RAY
from scripts.scale.jobs import find_series_jobs, iter_job_slices
from scripts.scale.worker import ScorerSettings, SeriesScorer, decode_result, encode_job
from scripts.score import main

from conftest import BUNDLE_ROOT
from dicom_helpers import write_ct_slice
from model_helpers import noise_scorer_checkpoint

TFKT_SCORE = Path(sys.executable).parent / "tfkt-score"
N_SERIES, N_SLICES, SIZE = 8, 10, 64
WORKER = b"SeriesScorer"  # in the process title of each Ray Data actor holding the model
NO_USAGE_STATS = {"RAY_USAGE_STATS_ENABLED": "0"}


def _write_series(folder: Path, noise_sd: float, rng, description: str) -> None:
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    body = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2
    uid = generate_uid()
    for k in range(N_SLICES):
        hu = np.where(body, 40.0, -1000.0) + rng.normal(0, noise_sd, (SIZE, SIZE))
        write_ct_slice(
            folder / f"im{k:02d}.dcm", np.clip(np.round(hu) + 1024, 0, 4095), series_uid=uid, instance=k + 1,
            position=(0.0, 0.0, 2.0 * k), description=description, extra={"CTDIvol": 2.0 + k, "KVP": 120},
        )  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Eight small series whose noise grows series by series, and a file that is not DICOM."""
    root = tmp_path_factory.mktemp("archive") / "exams"
    rng = np.random.default_rng(0)
    for s in range(N_SERIES):
        _write_series(root / f"exam{s}", 10.0 + 15.0 * s, rng, f"series {s}")
    (root / "notes.txt").write_text("not an image")
    return root


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _scores(out: Path) -> dict[str, float]:
    """Score by SOPInstanceUID over every series folder the index lists."""
    return {
        r["sop_instance_uid"]: float(r["score"])
        for row in _csv(out / "index.csv")
        for r in _csv(out / row["folder"] / "scores.csv")
    }


# --------------------------------------------------------------------------------------------------------------------
# without Ray: the command line, the series jobs and the worker


def test_missing_ray_is_a_usage_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as when the extra is not installed
    assert main([str(tmp_path), "--out", str(tmp_path / "out"), "--engine", "ray"]) == 2
    assert capsys.readouterr().err == f"error: ModuleNotFoundError: {MISSING_RAY}\n"
    assert "pip install -r requirements-scale.txt" in MISSING_RAY
    assert main([str(tmp_path), "--out", str(tmp_path / "out"), "--address", "auto"]) == 2
    assert "--address names a Ray cluster: add --engine ray" in capsys.readouterr().err


def test_the_extra_is_pinned_alike_in_pyproject_and_its_requirements_file():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as the pinned stack

    from conftest import REPO_ROOT

    pins = [line for line in (REPO_ROOT / "requirements-scale.txt").read_text().splitlines() if line[:1].isalpha()]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["scale"] == pins == ["ray[data]==2.60.0"]


def test_nothing_to_score_ends_before_ray_starts(tmp_path, capsys):
    pytest.importorskip("ray", reason="the Ray engine is the optional 'scale' extra")
    (tmp_path / "in").mkdir()
    write_ct_slice(
        tmp_path / "in" / "mr.dcm", np.zeros((8, 8)), series_uid="1.2", instance=1, position=None, modality="MR"
    )
    (tmp_path / "model.pt").write_bytes(b"")
    argv = [str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "model.pt")]
    assert main([*argv, "--engine", "ray", "--address", "unused:1"]) == 4  # the address is never dialled
    assert capsys.readouterr().err.startswith("error: no slice was scored (2 items skipped")
    assert [r["reason"] for r in _csv(tmp_path / "out" / "skipped.csv")][0] == "not CT (Modality 'MR')"


def test_help_shows_the_engine_without_importing_ray():
    code = (
        "import sys; from scripts.score import build_parser; text = build_parser().format_help(); "
        "print('--engine' in text, '--address' in text, 'ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True", "False"], done.stderr


def test_jobs_yield_the_slices_and_skips_of_the_local_stream(synthetic_folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    (other / "images").mkdir()
    for k in range(2):
        tifffile.imwrite(other / "images" / f"s{k}.tif", np.full((8, 8), 0.1 * (k + 1), np.float32))
    volume = np.zeros((8, 8, 3), np.float32)
    volume[1, 1, 2] = np.nan  # one slice of three is unusable
    nib.save(nib.Nifti1Image(volume, np.eye(4)), other / "v.nii.gz")
    (other / "empty").mkdir()
    inputs = [synthetic_folder["root"], other / "images", other / "v.nii.gz", other / "empty"]

    local_skipped, job_skipped = [], []
    local = list(iter_ct_slices(inputs, skipped=local_skipped))
    jobs = pickle.loads(pickle.dumps(find_series_jobs(inputs, job_skipped)))  # jobs travel to workers pickled
    found = [item for job in jobs for item in iter_job_slices(job, job_skipped)]
    assert [info for _, info in found] == [info for _, info in local] and len(local) == 5 + 2 + 2
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(found, local))
    # The same skips; the driver lists those of the headers before those of the pixels, which workers find.
    assert sorted(job_skipped) == sorted(local_skipped)
    assert {p.name for p, _ in job_skipped} == {"notes.txt", "mr.dcm", "empty", "v.nii.gz#2"}
    keys = [job.key for job in jobs]
    assert set(keys[:2]) == {synthetic_folder["uid_a"], synthetic_folder["uid_b"]}
    assert keys[2:] == [str(other / "images"), str(other / "v.nii.gz")]  # a folder of images is one series
    assert [job.key for job in find_series_jobs(inputs, [], exclude=keys[:3])] == keys[3:]


def test_worker_rows_are_those_of_the_workflow_report_whatever_the_batch(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "untrained.pt"
    torch.save(create_network("hybrid_tiny").state_dict(), checkpoint)
    _write_series(tmp_path / "series", 30.0, np.random.default_rng(1), "one")
    (job,) = find_series_jobs([tmp_path / "series"], [])
    settings = ScorerSettings(str(BUNDLE_ROOT), str(checkpoint), network_preset="hybrid_tiny", batch_size=4)
    answer = SeriesScorer(settings)({"job": np.array([encode_job(job)["job"]], dtype=object)})
    rows, skipped = decode_result({key: values[0] for key, values in answer.items()})
    assert answer["series"].tolist() == [job.key] and skipped == []
    assert [list(row) for row in rows] == [["name", "prediction", *SLICE_KEYS]] * N_SLICES
    assert [row["slice_index"] for row in rows] == list(range(N_SLICES))
    one_by_one = SeriesScorer(ScorerSettings(str(BUNDLE_ROOT), str(checkpoint), network_preset="hybrid_tiny"))
    _, single, _ = one_by_one.score_job(job)
    np.testing.assert_allclose([r["prediction"] for r in rows], [r["prediction"] for r in single], atol=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# on a 2-CPU Ray instance


def _descendants(pid: int) -> set[int]:
    """Process ids below ``pid`` (Linux /proc; psutil is not a dependency)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance with two CPUs for the module; after it is shut down no process of it is left."""
    ray = pytest.importorskip("ray", reason="the Ray engine is the optional 'scale' extra")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        yield ray.get_runtime_context().gcs_address
        started = _descendants(os.getpid())
        ray.shutdown()
    deadline = time.monotonic() + 30
    while (left := {pid for pid in started if _cmdline(pid)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [_cmdline(pid)[:80] for pid in left]


def _kill_a_worker_once_scoring_started(run: subprocess.Popen, out: Path, done_before: int) -> dict:
    """SIGKILL one model-holding worker as soon as the run has written a series, then watch the run to its end.

    Returns the pid killed, the series written by then, and every worker pid seen during the run.
    """
    seen, killed, deadline = set(), {}, time.monotonic() + 240
    while run.poll() is None and time.monotonic() < deadline:
        workers = sorted(p for p in _descendants(os.getpid()) if WORKER in _cmdline(p))
        seen.update(workers)
        written = len(list(out.glob("*/summary.json")))
        if not killed and written > done_before and workers:
            os.kill(workers[-1], signal.SIGKILL)
            killed = {"pid": workers[-1], "written": written}
        time.sleep(0.05)
    assert killed, f"no worker to kill before the run ended (rc {run.poll()})"
    return {**killed, "seen": seen}


@pytest.mark.slow
def test_ray_engine_survives_a_killed_worker_and_writes_what_the_local_engine_writes(tmp_path, study, ray_address):
    checkpoint = noise_scorer_checkpoint(tmp_path / "model.pt", SIZE)
    options = ["--checkpoint", str(checkpoint), "--network-preset", "hybrid_tiny", "--threshold", "0.45"]
    options += ["--backend", "torch"]  # the engines compared, on one backend
    local = tmp_path / "local"
    assert main([str(study), "--out", str(local), *options]) == 3  # notes.txt is skipped
    index = {row["folder"]: row for row in _csv(local / "index.csv")}
    kept = next(iter(index))  # a series an interrupted run finished: --resume keeps it, unread
    out = tmp_path / "ray"
    shutil.copytree(local / kept, out / kept)
    kept_mtime = (out / kept / "summary.json").stat().st_mtime_ns
    command = [str(TFKT_SCORE), str(study), "--out", str(out), *options, "--batch-size", "3", "--resume"]
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        run = subprocess.Popen(
            [*command, "--engine", "ray", "--address", ray_address], stdout=stdout, stderr=stderr,
            env={**os.environ, **NO_USAGE_STATS},
        )  # fmt: skip
        try:
            killed = _kill_a_worker_once_scoring_started(run, out, done_before=1)
            assert run.wait(timeout=10) == 3, (tmp_path / "stderr").read_text()[-3000:]
        finally:
            run.kill()  # a failed check leaves no run behind (a no-op once it has exited)
    assert killed["written"] < N_SERIES, "the worker was killed while series were left to score"
    # Whether Ray restarts the actor before the other one has taken the retried series depends on timing; what must
    # hold either way is checked below: the worker is gone, and every series is there once with its scores.
    assert not _cmdline(killed["pid"]), "the killed worker is gone"

    ours = _csv(out / "index.csv")
    assert sorted(row["folder"] for row in ours) == sorted(index) and len(ours) == N_SERIES  # each series once
    for row in ours:
        for key, value in row.items():
            theirs = index[row["folder"]][key]
            assert value == theirs or float(value) == pytest.approx(float(theirs), abs=1e-5), (row["folder"], key)
    expected, got = _scores(local), _scores(out)
    assert got.keys() == expected.keys() and len(got) == N_SERIES * N_SLICES
    assert max(abs(got[uid] - expected[uid]) for uid in expected) < 1e-5
    scored = [row["sop_instance_uid"] for row in _csv(out / "slice_predictions.csv")]
    assert len(scored) == len(set(scored)) == (N_SERIES - 1) * N_SLICES  # the kept series was not scored again
    assert (out / kept / "summary.json").stat().st_mtime_ns == kept_mtime
    assert (
        _csv(out / "skipped.csv")
        == _csv(local / "skipped.csv")
        == [{"path": str(study / "notes.txt"), "reason": "not DICOM (no 'DICM' file marker)"}]
    )
    page = (out / "report.html").read_text()
    assert all(f"series {s}" in page for s in range(N_SERIES)) and (out / "dose_quality.png").is_file()
    assert json.loads((out / kept / "summary.json").read_text())["threshold"] == 0.45
    assert f"wrote {out}: index.csv, report.html" in (tmp_path / "stdout").read_text()
