"""The tfkt_quality MONAI Label app: its infer task called directly, and through `monailabel start_server`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from lib.bundle import load_bundle
from lib.infers import QUALITY_LABEL, QualityScore
from monailabel.interfaces.tasks.infer_v2 import InferType

from scripts.ctio.slices import iter_ct_slices
from scripts.ctio.window import DEFAULT_HU_WINDOW
from scripts.nets.manifest import WeightsHashError, add_entry
from scripts.nets.networks import create_network

from conftest import APP_DIR, N_SLICES, REPO_ROOT, TINY_PRESET

CORE_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
MODEL = "tfkt_quality"
SERVER_START_S = 180  # a cold start imports torch, MONAI and the bundle on a 2-core machine


@pytest.fixture(scope="module")
def task(tiny_checkpoint) -> QualityScore:
    return QualityScore(load_bundle(network_preset=TINY_PRESET), tiny_checkpoint, batch_size=3)


def reference_scores(path: Path, checkpoint: Path) -> list[float]:
    """The network's own outputs on the bundle's windowed slices, one slice per call (as the workflow runs)."""
    network = create_network(TINY_PRESET)
    network.load_state_dict(torch.load(checkpoint))
    network.eval()
    with torch.no_grad():
        slices = iter_ct_slices(path, hu_window=DEFAULT_HU_WINDOW)
        return [float(network(torch.from_numpy(s)[None, None])) for s, _ in slices]


def infer(task: QualityScore, path: Path) -> dict:
    label, result = task({"image": str(path), "device": "cpu"})
    assert label is None  # a classification result: no label file
    return result


@pytest.mark.parametrize("name", ["clean.png", "noisy.png", "mid.tif"])
def test_image_file(task, studies, tiny_checkpoint, name):
    result = infer(task, studies / name)
    (expected,) = reference_scores(studies / name, tiny_checkpoint)
    assert result["label"] == QUALITY_LABEL
    assert result["score"] == pytest.approx(expected, abs=1e-5)
    assert result["prediction"] == [{"idx": 0, "label": QUALITY_LABEL, "score": result["score"]}]
    assert result["slices"] == [{"label": QUALITY_LABEL, "score": result["score"], "name": name, "slice_index": 0}]
    json.dumps(result, allow_nan=False)  # what the server sends must be strict JSON


def test_noise_lowers_score(task, studies):
    assert infer(task, studies / "noisy.png")["score"] < infer(task, studies / "clean.png")["score"]


def test_volume_scores_each_slice(task, volume, tiny_checkpoint):
    result = infer(task, volume)
    expected = reference_scores(volume, tiny_checkpoint)
    scores = [s["score"] for s in result["slices"]]
    assert len(scores) == len(result["prediction"]) == N_SLICES
    assert scores == pytest.approx(expected, abs=1e-5)
    assert [s["slice_index"] for s in result["slices"]] == list(range(N_SLICES))
    assert [p["idx"] for p in result["prediction"]] == list(range(N_SLICES))
    assert result["score"] == pytest.approx(np.mean(expected), abs=1e-5)
    assert len(set(np.round(scores, 4))) > 1, "the tiny model should tell the slices apart"


@pytest.mark.skipif(not CORE_PYTHON.exists(), reason=f"{CORE_PYTHON} is missing: `make venv` builds the core env")
def test_same_scores_as_bundle_workflow(task, volume, tiny_checkpoint, tmp_path):
    """The bundle's own inference workflow, run in the core environment (numpy 2), scores the volume the same."""
    command = [
        str(CORE_PYTHON), "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
        "--dataset_dir", str(volume), "--ckpt_path", str(tiny_checkpoint), "--network_preset", TINY_PRESET,
        "--output_dir", str(tmp_path), "--device", "$torch.device('cpu')",
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO_ROOT / "tfkt_bundle", check=True, capture_output=True, timeout=300)
    with open(tmp_path / "slice_predictions.csv", newline="") as f:
        workflow = {row["name"]: float(row["prediction"]) for row in csv.DictReader(f)}
    app = {s["name"]: s["score"] for s in infer(task, volume)["slices"]}
    assert len(app) == N_SLICES
    assert app == pytest.approx(workflow, abs=1e-4)


def test_task_is_classification(task):
    info = task.info()
    assert info["type"] == InferType.CLASSIFICATION
    assert info["labels"] == [QUALITY_LABEL]
    assert info["dimension"] == 2


def test_missing_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        QualityScore(load_bundle(network_preset=TINY_PRESET), missing)


def test_released_checkpoint_is_verified_at_start_up_and_on_reload(tiny_checkpoint, studies, tmp_path):
    """A checkpoint listed in its bundle's large_files.yml is used only while its SHA-256 matches."""
    (tmp_path / "large_files.yml").write_text("large_files: []\n")
    released = tmp_path / "models" / "model.pt"
    released.parent.mkdir()
    shutil.copyfile(tiny_checkpoint, released)
    add_entry(released)
    bundle = load_bundle(network_preset=TINY_PRESET)
    task = QualityScore(bundle, released)
    (expected,) = reference_scores(studies / "clean.png", released)
    assert infer(task, studies / "clean.png")["score"] == pytest.approx(expected, abs=1e-5)
    data = bytearray(released.read_bytes())
    data[len(data) // 2] ^= 0xFF
    released.write_bytes(bytes(data))
    os.utime(released, ns=(0, released.stat().st_mtime_ns + 10**9))  # a changed file, whatever the clock's step
    with pytest.raises(WeightsHashError, match=f"refusing {released}: its sha256"):
        infer(task, studies / "clean.png")
    with pytest.raises(WeightsHashError, match="expects"):
        QualityScore(bundle, released)


def test_checkpoint_holding_objects_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {}, "optimizer": torch.optim.Adam}, path)  # a class: unpickling would import and run code
    with pytest.raises(ValueError, match="holds objects other than tensors"):
        QualityScore(load_bundle(network_preset=TINY_PRESET), path)


def test_unknown_model_is_refused(studies, tiny_checkpoint):
    from main import TFKTQualityApp

    with pytest.raises(ValueError, match="tfkt_quality"):
        TFKTQualityApp(str(APP_DIR), str(studies), {"models": "segmentation", "checkpoint": str(tiny_checkpoint)})


# --------------------------------------------------------------------------------------------------------------------
# Through the real server, as a viewer reaches it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"monailabel start_server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/info/", timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    pytest.fail(f"monailabel start_server not ready after {SERVER_START_S} s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C to the server's own process group (uvicorn shuts down cleanly on it), then kill if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(studies, tiny_checkpoint, tmp_path_factory) -> Iterator[str]:
    port, log = free_port(), tmp_path_factory.mktemp("server") / "server.log"
    command = [
        str(Path(sys.executable).parent / "monailabel"), "start_server", "--app", str(APP_DIR),
        "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port),
        "--conf", "models", MODEL, "--conf", "checkpoint", str(tiny_checkpoint),
        "--conf", "network_preset", TINY_PRESET,
    ]  # fmt: skip
    # The monailabel script runs `python -m monailabel.main` with the `python` on PATH: this environment's, as when
    # it is activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "MONAI_LABEL_SESSION_PATH": str(tmp_path_factory.mktemp("sessions"))}
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
    assert process.returncode is not None


def test_server_lists_the_model(server):
    models = requests.get(f"{server}/info/", timeout=30).json()["models"]
    assert models[MODEL]["type"] == "classification"
    assert models[MODEL]["labels"] == [QUALITY_LABEL]


def test_server_scores_uploaded_image(server, task, studies):
    """A viewer without a shared datastore uploads the slice: multipart ``file`` plus ``params`` JSON."""
    with open(studies / "noisy.png", "rb") as f:
        files = {"file": ("noisy.png", f, "image/png")}
        response = requests.post(f"{server}/infer/{MODEL}", files=files, data={"params": "{}"}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    result = response.json()
    assert result["label"] == QUALITY_LABEL
    assert result["score"] == pytest.approx(infer(task, studies / "noisy.png")["score"], abs=1e-5)
    assert result["prediction"][0]["label"] == QUALITY_LABEL


def test_server_scores_datastore_image(server, task, studies):
    """Slicer and OHIF name a datastore image by its id instead."""
    response = requests.post(f"{server}/infer/{MODEL}", params={"image": "clean"}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["score"] == pytest.approx(infer(task, studies / "clean.png")["score"], abs=1e-5)


def test_server_keeps_a_readers_score(server):
    """The recipe of the README: a radiologist's score goes into the datastore as image info."""
    score = {"quality_score": {"score": 3.2, "reader": "reader_a"}}
    response = requests.put(f"{server}/datastore/image/info", params={"image": "mid"}, data={"info": json.dumps(score)})
    assert response.status_code == 200, response.text
    info = requests.get(f"{server}/datastore/image/info", params={"image": "mid"}, timeout=30).json()
    assert info["quality_score"] == score["quality_score"]
