"""The ``tfkt_quality`` infer task: a no-reference quality score per CT slice (0 = bad ... 4 = excellent)."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from torch import nn

from lib.bundle import Bundle
from lib.transforms.slices import ReadSlicesd
from scripts.nets.manifest import listed_entry
from scripts.nets.weights import load_state_dict_file

__all__ = ["QUALITY_LABEL", "QualityScore"]

logger = logging.getLogger(__name__)

QUALITY_LABEL = "quality_score"


class QualityScore(BasicInferTask):
    """Score every slice of an image with the bundle's network: a classification-style result.

    Result JSON (``/infer/<model>``, no label file)::

        {"label": "quality_score", "score": 3.1,            # the slice's score; for a volume the mean
         "slices": [{"label": "quality_score", "score": 3.1, "slice_index": 0, ...}, ...],
         "prediction": [{"idx": 0, "label": "quality_score", "score": 3.1}, ...]}   # the CVAT plugin's form

    Args:
        bundle: the parsed bundle (network, inferer, reading and windowing).
        checkpoint: the network's weights, a plain state dict (the bundle's ``models/model.pt`` by default).
        batch_size: slices per forward pass (a request's ``batch_size`` overrides it).
        description: shown by viewers.
    """

    def __init__(
        self,
        bundle: Bundle,
        checkpoint: str | os.PathLike | None = None,
        batch_size: int = 8,
        description: str = "CT image quality per slice (0 = bad ... 4 = excellent), tfkt_bundle",
    ) -> None:
        path = os.fspath(checkpoint or bundle.checkpoint)
        # Fail at start-up with the file's name: BasicInferTask would only say so at the first request. A released
        # file that is missing gets its manifest's reason (where to download it) from the loader instead.
        if not os.path.isfile(path) and listed_entry(path) is None:
            raise FileNotFoundError(
                f"{path} does not exist: train the bundle (README: Workflows) or pass --conf checkpoint <file>"
            )
        # Loaded here, so that a refused file (hash mismatch, pickled objects) also stops the app at start-up.
        self._weights = _Weights(path)
        super().__init__(
            path=path,
            network=bundle.network,
            type=InferType.CLASSIFICATION,
            labels=[QUALITY_LABEL],
            dimension=2,
            description=description,
            config={"batch_size": batch_size},
        )
        self.bundle = bundle

    def pre_transforms(self, data: dict | None = None) -> Sequence[Callable]:
        return [ReadSlicesd(self.bundle, keys=self.input_key)]

    def inferer(self, data: dict | None = None) -> Callable:
        # The bundle's inferer; the base class would pick one from data["image"].shape, a list here.
        return self.bundle.inferer

    def post_transforms(self, data: dict | None = None) -> Sequence[Callable]:
        return []

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict:
        """Score the slices in batches of equal shape (a DICOM folder may hold series of other sizes)."""
        network = self._weights.network(self.bundle.network, device)
        inferer = self.inferer(data)
        scores: list[float] = []
        with torch.no_grad():
            for batch in _batches(data[self.input_key], int(data.get("batch_size", 8))):
                outputs = inferer(torch.stack(batch).to(torch.device(device)), network)
                scores.extend(outputs.reshape(len(batch)).float().cpu().tolist())
        data[self.output_label_key] = torch.tensor(scores)
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[None, dict]:
        """No label file: the scores go back as JSON (MONAI Label's ClassificationWriter keeps one per label)."""
        scores = data[self.output_label_key].tolist()
        slices = [{"label": QUALITY_LABEL, "score": s, **ids} for s, ids in zip(scores, data["slices"])]
        result = {
            "label": QUALITY_LABEL,
            "score": sum(scores) / len(scores),
            "slices": slices,
            "prediction": [{"idx": k, "label": QUALITY_LABEL, "score": s} for k, s in enumerate(scores)],
        }
        return None, result


class _Weights:
    """The checkpoint's tensors, verified and loaded again when the file changes, and the network on each device.

    In place of BasicInferTask's loader, which unpickles the file with ``torch.load`` as it is: here every load
    goes through :func:`scripts.nets.weights.load_state_dict_file` (the bundle manifest's SHA-256 for a released
    file, tensors only).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = os.stat(path).st_mtime if os.path.exists(path) else None
        self._state = load_state_dict_file(path)
        self._networks: dict[str, nn.Module] = {}

    def network(self, template: nn.Module, device: str) -> nn.Module:
        """``template`` with the weights, on ``device``, in eval mode; one copy per device."""
        mtime = os.stat(self.path).st_mtime
        if mtime != self._mtime:
            logger.info("%s changed: loading its weights again", self.path)
            self._state, self._mtime = load_state_dict_file(self.path), mtime
            self._networks.clear()
        if device not in self._networks:
            network = copy.deepcopy(template).to(torch.device(device))
            network.load_state_dict(self._state, strict=True)
            self._networks[device] = network.eval()
        return self._networks[device]


def _batches(images: Sequence[torch.Tensor], size: int) -> Iterator[list[torch.Tensor]]:
    """Consecutive runs of at most ``size`` images of one shape, in order."""
    batch: list[torch.Tensor] = []
    for image in images:
        if batch and (len(batch) == size or image.shape != batch[0].shape):
            yield batch
            batch = []
        batch.append(image)
    if batch:
        yield batch
