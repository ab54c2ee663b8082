"""The bundle's network compiled by OpenVINO for the CPU, behind the ``torch.nn.Module`` interface.

Used by ``configs/inference_openvino.json`` (``tfkt-score --backend openvino``, the default on a CPU); needs the
optional ``export`` extra. On a 2-core AVX-512 machine it scores a 512x512 slice about 2.5x faster than eager
PyTorch at the same fp32 precision (``benchmarks/speed.py``): OpenVINO folds batch norms into convolutions, fuses
activations and pads once. The model is converted on first use, once per slice size, from the wrapped network *after*
its checkpoint was loaded, through the ONNX exporter that ships with torch (OpenVINO's own converter is not used:
it sends usage telemetry by default). A slice size the exporter cannot trace falls back to the wrapped network.

By default (``precision="auto"`` in the config) a CPU with native bf16 (AVX-512 BF16 or AMX) runs "mixed" precision:
the network is split (``SpatialHybridIQA.split``) into a front, compiled at f32 because it sees the noise texture
that bf16 rounds away, and the rest, compiled at bf16; the rest reads the front's output tensor in place. One
OpenVINO model cannot mix the two: its precision hint applies to every layer.
"""

from __future__ import annotations

import functools
import io
import logging
import warnings

import numpy as np
import torch
from torch import nn

__all__ = [
    "FRONT_STAGES",
    "OpenVinoNetwork",
    "PRECISIONS",
    "cpu_has_bf16",
    "onnx_bytes",
    "openvino_core",
    "resolved_precision",
]

logger = logging.getLogger(__name__)
# "f32": every layer in f32, scores as eager PyTorch's. "bf16": every layer in bf16, which rounds the windowed input,
# and even the stem's output, to 8 bits of mantissa, the scale of the noise the model grades: scores moved by up to
# 0.40 (benchmarks/precision.py). "mixed": the front of the network (normalisation, stem, first FRONT_STAGES
# stages, which see the noise at full and half resolution) in f32 and the rest in bf16; "auto": mixed where the CPU
# has native bf16, else f32.
PRECISIONS = ("auto", "f32", "mixed", "bf16")
# The fewest front stages kept in f32 that held every score within 0.05 of f32 on 300 slices of the training CT set,
# never the evaluation sets (benchmarks/mixed_precision.py: largest change 0.38 with the stem alone, 0.053 with 2
# stages, 0.033 with 3, 0.023 with 4), and among the fastest (1.58x f32 on an AMX Xeon, bf16 throughout 2.14x).
FRONT_STAGES = 3


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


def resolved_precision(precision: str, network: nn.Module) -> str:
    """``auto``: ``mixed`` where the CPU has native bf16 and ``network`` can be split (``split``), else ``f32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "mixed" if hasattr(network, "split") and cpu_has_bf16() else "f32"
    if precision == "mixed" and not hasattr(network, "split"):
        raise ValueError(f"precision 'mixed' needs a network with a split front ({type(network).__name__} has none)")
    return precision


class OpenVinoNetwork(nn.Module):
    """Run ``network`` with OpenVINO on the CPU: (B, 1, H, W) float32 in, (B, 1) float32 scores out.

    Args:
        network: the torch network, weights loaded before the first forward (the workflow's CheckpointLoader runs
            when the evaluator starts, so conversion waits for the first batch).
        precision: one of ``PRECISIONS``: "f32" (scores as eager PyTorch's to ~1e-5), "mixed" (the front in f32, the
            rest in bf16), "bf16", or "auto" (mixed where the CPU has native bf16, else f32).
        threads: OpenVINO inference threads (None: one per core).
        streams: slices of a batch run at once, each on its own share of the threads (1: one slice after another,
            every thread on each). Beside a decoding worker, independent streams lose less to the contended cores
            than one slice split over all of them.
        front_stages: with "mixed", the backbone stages after the stem that run in f32.
    """

    def __init__(
        self,
        network: nn.Module,
        precision: str = "f32",
        threads: int | None = None,
        streams: int = 1,
        front_stages: int = FRONT_STAGES,
    ) -> None:
        super().__init__()
        _openvino()  # a missing package fails when the workflow is built, not at the first slice
        self.precision = resolved_precision(precision, network)
        if self.precision != "f32" and not cpu_has_bf16():
            # Without native bf16 OpenVINO emulates it: 4x slower than f32 on an Ice Lake Xeon (benchmarks/speed.py).
            logger.warning("OpenVINO: this CPU has no native bf16 (AVX-512 BF16 or AMX), so bf16 is slower than f32")
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        self.network = network
        self.threads = threads
        self.streams = int(streams)
        self.front_stages = front_stages
        # Per slice size: the compiled stages run one after another (two with "mixed"), or None where the exporter
        # failed; and per stream one infer request per stage.
        self._compiled: dict[tuple[int, int], list | None] = {}
        self._requests: dict[tuple[int, int], list[list]] = {}

    def train(self, mode: bool = True) -> OpenVinoNetwork:
        # MONAI's evaluator calls eval() every iteration: walking the wrapped network's few hundred modules each
        # time costs ~5 ms a slice, and the compiled model has no training mode (the wrapped one stays in eval).
        self.training = mode
        return self

    def _stages(self, example: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor, str]]:
        """(module, example input, precision) of each stage to compile, in order."""
        if self.precision != "mixed":
            return [(self.network, example, self.precision)]
        front, rest = self.network.split(self.front_stages)
        with torch.no_grad():
            middle = front(example)
        return [(front, example, "f32"), (rest, middle, "bf16")]

    def _compile(self, height: int, width: int) -> list | None:
        self.network.eval()
        core = openvino_core()
        compiled = []
        with torch.inference_mode(False):  # the forward runs in inference mode; tracing needs normal tensors
            stages = self._stages(torch.zeros(1, self.network.in_chans, height, width))
        for module, example, precision in stages:
            try:
                model = onnx_bytes(module, example)
            except Exception as err:  # noqa: BLE001 - any exporter failure means: use the torch network
                logger.warning("OpenVINO: %dx%d slices run in PyTorch (export failed: %s)", height, width, err)
                return None
            config = {"INFERENCE_PRECISION_HINT": precision}
            config.update({"NUM_STREAMS": self.streams} if self.streams > 1 else {"PERFORMANCE_HINT": "LATENCY"})
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = int(self.threads)
            compiled.append(core.compile_model(core.read_model(model, b""), "CPU", config))
        logger.info("OpenVINO: %dx%d slices compiled at %s precision", height, width, self.precision)
        return compiled

    def _model_for(self, height: int, width: int) -> list | None:
        key = (height, width)
        if key not in self._compiled:
            self._compiled[key] = self._compile(height, width)
            if self._compiled[key] is not None:
                self._requests[key] = [
                    [c.create_infer_request() for c in self._compiled[key]] for _ in range(self.streams)
                ]
        return self._compiled[key]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        if self._model_for(*size) is None:
            with torch.inference_mode():
                return self.network(image)
        array = image.detach().to("cpu", torch.float32).numpy()
        # Traced at batch 1 (the exporter fixes the batch inside attention): a batch's slices go to the streams.
        slices = [np.ascontiguousarray(array[i : i + 1]) for i in range(array.shape[0])]
        scores = self._run(self._requests[size], slices)
        return torch.from_numpy(np.concatenate(scores, axis=0)).to(image.device)

    @staticmethod
    def _run(chains: list[list], slices: list[np.ndarray]) -> list[np.ndarray]:
        # Plain infer requests, started together and waited on in order: no Python callbacks on OpenVINO's threads.
        # A stage reads the previous stage's output tensor in place: nothing is copied between them.
        scores = []
        for start in range(0, len(slices), len(chains)):
            group = list(zip(chains, slices[start : start + len(chains)]))
            for stage in range(len(chains[0])):
                for chain, one in group:
                    if stage == 0:
                        chain[0].set_input_tensor(0, _tensor(one))
                    else:
                        chain[stage].set_input_tensor(0, chain[stage - 1].get_output_tensor(0))
                    chain[stage].start_async()
                for chain, _ in group:
                    chain[stage].wait()
            scores.extend(chain[-1].get_output_tensor(0).data.copy() for chain, _ in group)
        return scores


def _tensor(array: np.ndarray):
    return _openvino().Tensor(array, shared_memory=True)
