"""The OpenVINO backend (scripts.nets.openvino_runtime), the thread split beside decoders, and backend choice."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from scripts.nets.networks import create_network
from scripts.score import build_parser, resolved_backend

from conftest import BUNDLE_ROOT

ov = pytest.importorskip("openvino", reason="the OpenVINO backend is the optional 'export' extra")

from scripts.nets.openvino_runtime import PRECISIONS, OpenVinoNetwork, cpu_has_bf16, resolved_precision  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_network("hybrid_tiny").eval()


def _eager(network, x):
    with torch.inference_mode():
        return network(x)


def test_f32_matches_eager_for_any_batch_and_compiles_once_per_size(tiny):
    wrapped = OpenVinoNetwork(tiny, precision="f32")
    x = torch.rand(3, 1, 96, 64)
    with torch.inference_mode():
        got = wrapped(x)
        wrapped(x[:1])
    assert got.shape == (3, 1) and got.dtype == torch.float32
    torch.testing.assert_close(got, _eager(tiny, x), atol=1e-4, rtol=0)
    assert list(wrapped._compiled) == [(96, 64)] and wrapped._compiled[(96, 64)] is not None


def test_streams_score_each_slice_of_a_batch_as_one_after_another_does(tiny):
    x = torch.rand(5, 1, 64, 64)  # an odd batch: the last slice has no partner stream
    wrapped = OpenVinoNetwork(tiny, precision="f32", threads=2, streams=2)
    with torch.inference_mode():
        first, again = wrapped(x), wrapped(x.flip(0))
    assert [c.get_property("NUM_STREAMS") for c in wrapped._compiled[(64, 64)]] == [2]
    torch.testing.assert_close(first, _eager(tiny, x), atol=1e-4, rtol=0)
    torch.testing.assert_close(again, first.flip(0), atol=1e-5, rtol=0)  # results stay in the batch's order
    assert [len(r) for r in wrapped._requests.values()] == [2]  # one chain of requests per stream, made once
    with pytest.raises(ValueError, match="streams must be at least 1"):
        OpenVinoNetwork(tiny, streams=0)


def test_models_freed_in_the_order_they_were_made_leave_signal_handlers_working():
    # Each openvino.Core's CPU plugin swaps the main thread's signal stack and restores the one it found when freed:
    # with a Core per model, freeing the first model first left a dangling stack and the next Python signal handler
    # (here SIGUSR1; in scoring, a DataLoader worker's SIGCHLD) died with SIGSEGV.
    code = """
import gc, os, signal, torch
from scripts.nets.networks import create_network
from scripts.nets.openvino_runtime import OpenVinoNetwork
first, second = (OpenVinoNetwork(create_network("hybrid_tiny").eval()) for _ in range(2))
with torch.inference_mode():
    first(torch.rand(1, 1, 64, 64)), first(torch.rand(1, 1, 32, 32)), second(torch.rand(1, 1, 64, 64))
del first; gc.collect()
del second; gc.collect()
signal.signal(signal.SIGUSR1, lambda *_: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (0, "handled\n"), done.stderr[-2000:]


def test_bf16_stays_close_to_eager(tiny):
    x = torch.rand(4, 1, 64, 64)
    with torch.inference_mode():
        got = OpenVinoNetwork(tiny, precision="bf16")(x)
    assert float((got - _eager(tiny, x)).abs().max()) < 0.05  # the 0-4 scale; bf16 keeps 8 mantissa bits


def _convolution_precisions(compiled) -> set[str]:
    layers = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
    return {i["runtimePrecision"].astype(str) for i in layers if i["layerType"].astype(str) == "Convolution"}


def test_mixed_runs_the_front_in_f32_and_the_rest_in_bf16_in_the_batchs_order(tiny):
    wrapped = OpenVinoNetwork(tiny, precision="mixed", threads=2, streams=2, front_stages=2)
    x = torch.rand(3, 1, 64, 64)
    with torch.inference_mode():
        got, again = wrapped(x), wrapped(x.flip(0))
    front, rest = wrapped._compiled[(64, 64)]
    assert _convolution_precisions(front) == {"f32"} and _convolution_precisions(rest) == {"bf16"}
    assert [len(chain) for chain in wrapped._requests[(64, 64)]] == [2, 2]  # per stream, one request per stage
    assert float((got - _eager(tiny, x)).abs().max()) < 0.05
    torch.testing.assert_close(again, got.flip(0), atol=1e-5, rtol=0)


def test_auto_is_mixed_exactly_where_the_cpu_has_native_bf16(tiny):
    assert OpenVinoNetwork(tiny, precision="auto").precision == ("mixed" if cpu_has_bf16() else "f32")
    unsplittable = nn.Conv2d(1, 1, 3)
    assert resolved_precision("auto", unsplittable) == "f32"
    with pytest.raises(ValueError, match="'mixed' needs a network with a split front"):
        resolved_precision("mixed", unsplittable)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="CPU flags are read from Linux's /proc/cpuinfo")
def test_bf16_warns_exactly_where_the_cpu_has_no_native_bf16(tiny, caplog):
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert cpu_has_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})  # OpenVINO's view agrees with the kernel's
    OpenVinoNetwork(tiny, precision="f32")
    assert "no native bf16" not in caplog.text
    for precision in ("bf16", "mixed"):
        caplog.clear()
        OpenVinoNetwork(tiny, precision=precision)
        assert ("no native bf16" in caplog.text) == (not cpu_has_bf16())


def test_pooled_token_grids_export_when_even_and_fall_back_to_torch_otherwise(tiny, caplog):
    # hybrid_tiny pools token grids above 8x8: a 512 slice gives 16x16 (pooled 2:1), a 320 slice 10x10 (adaptive).
    wrapped = OpenVinoNetwork(tiny, precision="f32")
    even, uneven = torch.rand(1, 1, 512, 512), torch.rand(1, 1, 320, 320)
    with torch.inference_mode():
        torch.testing.assert_close(wrapped(even), _eager(tiny, even), atol=1e-4, rtol=0)
        assert torch.equal(wrapped(uneven), _eager(tiny, uneven))
    assert wrapped._compiled[(512, 512)] is not None and wrapped._compiled[(320, 320)] is None
    assert "320x320 slices run in PyTorch" in caplog.text


def test_eval_does_not_walk_the_wrapped_network(tiny):
    wrapped = OpenVinoNetwork(tiny, precision="f32")
    calls = []
    original = tiny.train
    tiny.train = lambda mode=True: calls.append(mode) or original(mode)
    try:
        wrapped.eval()
        assert not calls and not wrapped.training
        wrapped.train()
        assert not calls and wrapped.training
    finally:
        tiny.train = original


def test_precision_is_checked_when_the_network_is_built(tiny):
    assert OpenVinoNetwork(tiny).precision == "f32"
    with pytest.raises(ValueError, match="precision must be one of"):
        OpenVinoNetwork(tiny, precision="f16")


def test_auto_backend_is_openvino_on_a_cpu_and_torch_on_a_gpu():
    assert resolved_backend("auto", "cpu") == "openvino"
    assert resolved_backend("auto", "cuda") == "torch"
    assert resolved_backend("auto", "auto") == ("torch" if torch.cuda.is_available() else "openvino")
    assert resolved_backend("onnx", "cpu") == "onnx"
    args = build_parser().parse_args(["x", "--out", "o"])
    assert isinstance(args, argparse.Namespace) and (args.backend, args.precision) == ("auto", "auto")
    precision = next(a for a in build_parser()._actions if a.dest == "precision")
    assert tuple(precision.choices) == PRECISIONS
