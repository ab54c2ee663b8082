"""The bundle's network compiled by OpenVINO for the CPU, behind the ``torch.nn.Module`` interface.

Used by ``configs/inference_openvino.json`` (``tfkt-score --backend openvino``, the default on a CPU); needs the
optional ``export`` extra. On a 2-core AVX-512 machine it scores a 512x512 slice about 2.5x faster than eager
PyTorch at the same fp32 precision (``benchmarks/speed.py``): OpenVINO folds batch norms into convolutions, fuses
activations and pads once. The model is converted on first use, once per slice size, from the wrapped network *after*
its checkpoint was loaded, through the ONNX exporter that ships with torch (OpenVINO's own converter is not used:
it sends usage telemetry by default). A slice size the exporter cannot trace falls back to the wrapped network.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import torch
from torch import nn

__all__ = ["OpenVinoNetwork", "PRECISIONS", "onnx_bytes"]

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


class OpenVinoNetwork(nn.Module):
    """Run ``network`` with OpenVINO on the CPU: (B, 1, H, W) float32 in, (B, 1) float32 scores out.

    Args:
        network: the torch network, weights loaded before the first forward (the workflow's CheckpointLoader runs
            when the evaluator starts, so conversion waits for the first batch).
        precision: "f32" (scores as eager PyTorch's to ~1e-5) or "bf16" (faster where the CPU has bf16, scores
            differ; see PRECISIONS).
        threads: OpenVINO inference threads (None: one per core).
    """

    def __init__(self, network: nn.Module, precision: str = "f32", threads: int | None = None) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        _openvino()  # a missing package fails when the workflow is built, not at the first slice
        self.network = network
        self.precision = precision
        self.threads = threads
        self._compiled: dict[tuple[int, int], object] = {}

    def train(self, mode: bool = True) -> OpenVinoNetwork:
        # MONAI's evaluator calls eval() every iteration: walking the wrapped network's few hundred modules each
        # time costs ~5 ms a slice, and the compiled model has no training mode (the wrapped one stays in eval).
        self.training = mode
        return self

    def _compile(self, height: int, width: int):
        ov = _openvino()
        self.network.eval()
        try:
            model = onnx_bytes(self.network, torch.zeros(1, self.network.in_chans, height, width))
        except Exception as err:  # noqa: BLE001 - any exporter failure means: use the torch network
            logger.warning("OpenVINO: %dx%d slices run in PyTorch (export failed: %s)", height, width, err)
            return None
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        core = ov.Core()
        return core.compile_model(core.read_model(model, b""), "CPU", config)

    def _model_for(self, height: int, width: int):
        key = (height, width)
        if key not in self._compiled:
            self._compiled[key] = self._compile(height, width)
        return self._compiled[key]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        compiled = self._model_for(*image.shape[-2:])
        if compiled is None:
            with torch.inference_mode():
                return self.network(image)
        array = image.detach().to("cpu", torch.float32).numpy()
        # Traced at batch 1 (the exporter fixes the batch inside attention); slice by slice is also OpenVINO's
        # fastest mode on a CPU.
        scores = [compiled(np.ascontiguousarray(array[i : i + 1]))[0] for i in range(array.shape[0])]
        return torch.from_numpy(np.concatenate(scores, axis=0)).to(image.device)
