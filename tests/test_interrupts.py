"""Training killed mid-epoch (SIGTERM, SIGKILL) in a real subprocess resumes from the last complete epoch and ends
with the weights of a run that was never interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import BUNDLE_ROOT

pytestmark = pytest.mark.slow
TINY = {
    "network_preset": "hybrid_tiny",
    "batch_size": 4,
    "max_shift": 2,
    "n_boot": 20,
    "use_mlflow": False,
    "crop_size": [32, 32],
}
EPOCHS = 3


def _command(tmp_path, data, *extra: str) -> list[str]:
    args = {
        **TINY,
        "ckpt_dir": tmp_path / "models",
        "output_dir": tmp_path / "eval",
        "dataset_dir": data["train"],
        "val_fraction": 0.25,
        "max_epochs": EPOCHS,
    }
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/train.json"]
    return command + [f"--{key}={value}" for key, value in args.items()] + list(extra)


def _train(tmp_path, data, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        _command(tmp_path, data, *extra), cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _final_weights(tmp_path) -> dict:
    return torch.load(tmp_path / "eval" / "finetune" / "last.pt", weights_only=True)


def _epoch_saved(last) -> int:
    try:
        saved = torch.load(last, weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0
    return saved["trainer"]["iteration"] // saved["trainer"]["epoch_length"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_ct_data) -> dict:
    root = tmp_path_factory.mktemp("uninterrupted")
    _train(root, tiny_ct_data)
    return _final_weights(root)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)])
def test_killed_training_resumes_to_the_weights_of_an_uninterrupted_run(
    tmp_path, tiny_ct_data, uninterrupted, sig, status
):
    process = subprocess.Popen(
        _command(tmp_path, tiny_ct_data), cwd=BUNDLE_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    last = tmp_path / "eval" / "finetune" / "last.pt"
    deadline = time.monotonic() + 300
    while _epoch_saved(last) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)  # during epoch 2: epoch 1 is the last complete one
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err[-3000:]
    if sig == signal.SIGTERM:
        assert "resume with:" in err and "Traceback" not in err
    assert _epoch_saved(last) == 1
    _train(tmp_path, tiny_ct_data, "--resume=True")
    resumed = _final_weights(tmp_path)
    assert resumed["trainer"]["iteration"] == uninterrupted["trainer"]["iteration"]
    for name, weight in uninterrupted["model"].items():
        torch.testing.assert_close(resumed["model"][name], weight, rtol=0, atol=1e-6, msg=name)
    for key, state in uninterrupted["optimizer"]["state"].items():
        torch.testing.assert_close(resumed["optimizer"]["state"][key]["exp_avg"], state["exp_avg"], rtol=0, atol=1e-6)
