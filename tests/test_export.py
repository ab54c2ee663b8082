"""Export as a deployment would use it: TorchScript and ONNX files made by MONAI's commands, loaded elsewhere."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from scripts.nets.networks import create_network

from conftest import BUNDLE_ROOT


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    network = create_network("hybrid_tiny").eval()
    torch.save(network.state_dict(), tmp_path / "model.pt")
    return network, tmp_path / "model.pt"


def _bundle(*args, timeout=600):
    command = [sys.executable, "-m", "monai.bundle", *map(str, args)]
    done = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


def test_ckpt_export_model_ts_loads_in_a_fresh_process_and_matches_eager(tmp_path, tiny_checkpoint):
    network, ckpt = tiny_checkpoint
    _bundle(
        "ckpt_export",
        "network_def",
        "--filepath",
        tmp_path / "model.ts",
        "--ckpt_file",
        ckpt,
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
        "--network_preset",
        "hybrid_tiny",
    )
    x = torch.rand(3, 1, 80, 64)
    torch.save(x, tmp_path / "x.pt")
    # A process that has neither the bundle's code nor its configs: the file alone scores.
    script = (
        f"import torch; m = torch.jit.load({str(tmp_path / 'model.ts')!r}); "
        f"torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with torch.no_grad():
        assert float((torch.load(tmp_path / "y.pt") - network(x)).abs().max()) < 1e-5


def test_onnx_export_has_dynamic_batch_and_size_and_matches_eager(tmp_path, tiny_checkpoint):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export is the optional 'export' extra")
    network, ckpt = tiny_checkpoint
    _bundle(
        "onnx_export",
        "--args_file",
        "configs/onnx_export.json",
        "--filepath",
        tmp_path / "model.onnx",
        "--ckpt_file",
        ckpt,
        "--network_preset",
        "hybrid_tiny",
    )
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["pred"]
    for batch, height, width in ((1, 64, 64), (7, 96, 64)):  # exported at batch 2, 64x64
        x = torch.rand(batch, 1, height, width)
        with torch.no_grad():
            expected = network(x).numpy()
        (got,) = session.run(None, {"image": x.numpy()})
        assert got.shape == (batch, 1) and float(np.abs(got - expected).max()) < 1e-4
