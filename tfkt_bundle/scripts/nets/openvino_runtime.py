"""The bundle's network compiled by OpenVINO for the CPU, behind the ``torch.nn.Module`` interface.

Used by ``configs/inference_openvino.json`` (``tfkt-score --backend openvino``, the default on a CPU); needs the
optional ``export`` extra. On a 2-core AVX-512 machine it scores a 512x512 slice about 2.5x faster than eager
PyTorch at the same fp32 precision (``benchmarks/speed.py``): OpenVINO folds batch norms into convolutions, fuses
activations and pads once. The model is converted on first use, once per slice size, from the wrapped network *after*
its checkpoint was loaded, through the ONNX exporter that ships with torch (OpenVINO's own converter is not used:
it sends usage telemetry by default). A slice size the exporter cannot trace falls back to the wrapped network.
"""

from __future__ import annotations

import functools
import io
import logging
import warnings

import numpy as np
import torch
from torch import nn

__all__ = ["OpenVinoNetwork", "PRECISIONS", "cpu_has_bf16", "onnx_bytes", "openvino_core"]

logger = logging.getLogger(__name__)
# f32 is the default: bf16 rounds the windowed input to 8 bits of mantissa, which is the scale of the noise the model
# grades, and moved scores by up to 0.31 and held-out SROCC by up to 0.06 (benchmarks/precision.py).
PRECISIONS = ("f32", "bf16")


def onnx_bytes(network: nn.Module, example: torch.Tensor) -> bytes:
    """``network`` (in eval mode) traced at ``example``'s shape to an in-memory ONNX model, as OpenVINO reads it."""
    buffer = io.BytesIO()
    # With autograd on, torch's transformer layers take their exportable path, not the fused inference one.
    with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python code, expected here
        torch.onnx.export(network, (example,), buffer, dynamo=False, input_names=["image"])
    return buffer.getvalue()


def _openvino():
    try:
        import openvino
    except ImportError as err:
        raise ImportError("the OpenVINO backend needs openvino: pip install -r requirements-export.txt") from err
    return openvino


@functools.cache
def openvino_core():
    """The process's one ``openvino.Core``, alive until exit: compile every model with it.

    Each Core loads its own CPU plugin, which on creation points the main thread's signal stack at memory of its own
    and on destruction restores the one it found. Cores freed in the order they were made (two slice sizes, two
    scoring runs in one process) leave that stack pointing at freed memory, and the next Python signal handler (a
    DataLoader worker's SIGCHLD, Ctrl-C) kills the process with SIGSEGV. One Core that is never freed cannot.
    """
    return _openvino().Core()


def cpu_has_bf16() -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (AVX-512 BF16 or AMX)."""
    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoNetwork(nn.Module):
    """Run ``network`` with OpenVINO on the CPU: (B, 1, H, W) float32 in, (B, 1) float32 scores out.

    Args:
        network: the torch network, weights loaded before the first forward (the workflow's CheckpointLoader runs
            when the evaluator starts, so conversion waits for the first batch).
        precision: "f32" (scores as eager PyTorch's to ~1e-5) or "bf16" (faster where the CPU has bf16, scores
            differ; see PRECISIONS).
        threads: OpenVINO inference threads (None: one per core).
        streams: slices of a batch run at once, each on its own share of the threads (1: one slice after another,
            every thread on each). Beside a decoding worker, independent streams lose less to the contended cores
            than one slice split over all of them.
    """

    def __init__(
        self, network: nn.Module, precision: str = "f32", threads: int | None = None, streams: int = 1
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        _openvino()  # a missing package fails when the workflow is built, not at the first slice
        if precision == "bf16" and not cpu_has_bf16():
            # Without native bf16 OpenVINO emulates it: 4x slower than f32 on an Ice Lake Xeon (benchmarks/speed.py).
            logger.warning("OpenVINO: this CPU has no native bf16 (AVX-512 BF16 or AMX), so bf16 is slower than f32")
        self.network = network
        self.precision = precision
        self.threads = threads
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        self.streams = int(streams)
        self._compiled: dict[tuple[int, int], object] = {}
        self._requests: dict[tuple[int, int], list] = {}  # per slice size, one infer request per stream

    def train(self, mode: bool = True) -> OpenVinoNetwork:
        # MONAI's evaluator calls eval() every iteration: walking the wrapped network's few hundred modules each
        # time costs ~5 ms a slice, and the compiled model has no training mode (the wrapped one stays in eval).
        self.training = mode
        return self

    def _compile(self, height: int, width: int):
        self.network.eval()
        try:
            model = onnx_bytes(self.network, torch.zeros(1, self.network.in_chans, height, width))
        except Exception as err:  # noqa: BLE001 - any exporter failure means: use the torch network
            logger.warning("OpenVINO: %dx%d slices run in PyTorch (export failed: %s)", height, width, err)
            return None
        config = {"INFERENCE_PRECISION_HINT": self.precision}
        config.update({"NUM_STREAMS": self.streams} if self.streams > 1 else {"PERFORMANCE_HINT": "LATENCY"})
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        core = openvino_core()
        return core.compile_model(core.read_model(model, b""), "CPU", config)

    def _model_for(self, height: int, width: int):
        key = (height, width)
        if key not in self._compiled:
            self._compiled[key] = self._compile(height, width)
        return self._compiled[key]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        compiled = self._model_for(*size)
        if compiled is None:
            with torch.inference_mode():
                return self.network(image)
        array = image.detach().to("cpu", torch.float32).numpy()
        # Traced at batch 1 (the exporter fixes the batch inside attention): a batch's slices go to the streams.
        slices = [np.ascontiguousarray(array[i : i + 1]) for i in range(array.shape[0])]
        if self.streams > 1 and len(slices) > 1:
            scores = self._run_streams(size, compiled, slices)
        else:
            scores = [compiled(one)[0] for one in slices]
        return torch.from_numpy(np.concatenate(scores, axis=0)).to(image.device)

    def _run_streams(self, size: tuple[int, int], compiled, slices: list[np.ndarray]) -> list[np.ndarray]:
        # Plain infer requests, started together and waited on in order: no Python callbacks on OpenVINO's threads.
        if size not in self._requests:
            self._requests[size] = [compiled.create_infer_request() for _ in range(self.streams)]
        requests = self._requests[size]
        scores = []
        for start in range(0, len(slices), len(requests)):
            group = list(zip(requests, slices[start : start + len(requests)]))
            for request, one in group:
                request.start_async({0: one})
            for request, _ in group:
                request.wait()
                scores.append(request.get_output_tensor(0).data.copy())
        return scores
