"""The ``tfkt_quality`` infer task: a no-reference quality score per CT slice (0 = bad ... 4 = excellent)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.bundle import Bundle
from lib.transforms.slices import ReadSlicesd

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
        # Fail at start-up with the file's name: BasicInferTask would only say so at the first request.
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} does not exist: train the bundle (README: Workflows) or pass --conf checkpoint <file>"
            )
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
        network = self._get_network(device, data)
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
