"""An exported ONNX model behind the ``torch.nn.Module`` interface, so MONAI's evaluator runs it like the network.

Used by ``configs/inference_onnx.json`` (``tfkt-score --backend onnx``); needs the optional ``export`` extra.
"""

from __future__ import annotations

import os

import numpy as np
import torch

__all__ = ["OnnxRuntimeNetwork"]


class OnnxRuntimeNetwork(torch.nn.Module):
    """Run an ONNX model with ONNX Runtime: (B, 1, H, W) float32 in, (B, 1) scores out, on the input's device.

    Args:
        path: the ``.onnx`` file (``python -m monai.bundle onnx_export --args_file configs/onnx_export.json``).
        device: "cuda..." uses ONNX Runtime's CUDA provider when it is installed, else the CPU one.
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError("the ONNX backend needs onnxruntime: pip install -e '.[export]'") from err
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        available = ort.get_available_providers()
        wanted = ["CUDAExecutionProvider"] if str(device).startswith("cuda") else []
        providers = [p for p in wanted if p in available] + ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(image.detach().to("cpu", torch.float32).numpy())
        (scores,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(scores).to(image.device)
