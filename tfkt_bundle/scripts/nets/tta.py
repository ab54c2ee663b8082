"""Test-time augmentation over the dihedral group of a slice: its score's spread as a per-slice uncertainty.

A slice's quality does not change when it is flipped or turned by 90 degrees, so a network whose score does is
unsure of that slice. :class:`DihedralInferer` scores the 8 views (4 rotations, each also mirrored) with whatever
network the evaluator runs (eager torch, OpenVINO, ONNX Runtime: the views are made outside the network) and returns
their mean and standard deviation; :class:`SplitScoreSpread` turns that into the workflow's ``pred`` and
``score_sd``. Both are wired by ``configs/inference_uncertainty.json`` (``tfkt-score --uncertainty``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.inferers import Inferer
from monai.transforms import MapTransform

__all__ = ["N_VIEWS", "dihedral_views", "DihedralInferer", "SplitScoreSpread"]

N_VIEWS = 8


def dihedral_views(images: torch.Tensor) -> list[torch.Tensor]:
    """The 8 views of (B, C, H, W) images: rotations by 0, 90, 180, 270 degrees, then the same of the mirror image.

    Odd rotations swap H and W: the networks are fully convolutional with positions defined for any grid, and the
    OpenVINO backend compiles each of the two shapes once.
    """
    mirrored = torch.flip(images, dims=(-1,))
    return [torch.rot90(base, k, dims=(-2, -1)).contiguous() for base in (images, mirrored) for k in range(4)]


class DihedralInferer(Inferer):
    """Score each image's 8 dihedral views with ``network``; return (B, 2): the mean score and its standard deviation.

    The deviation is the population one (ddof 0): the 8 views are the whole group, not a sample of it. Views of one
    shape go through the network as one batch (two batches for non-square slices), so a batch of B slices costs
    8B slices of network time.
    """

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        views = dihedral_views(inputs)
        scores: list[torch.Tensor | None] = [None] * N_VIEWS
        for shape in dict.fromkeys(v.shape for v in views):
            picked = [k for k, v in enumerate(views) if v.shape == shape]
            out = torch.as_tensor(network(torch.cat([views[k] for k in picked]), *args, **kwargs))
            for k, chunk in zip(picked, out.reshape(len(picked), inputs.shape[0], -1)[..., 0].float()):
                scores[k] = chunk
        stacked = torch.stack(scores, dim=1)  # (B, 8)
        return torch.stack([stacked.mean(dim=1), stacked.std(dim=1, unbiased=False)], dim=1)


class SplitScoreSpread(MapTransform):
    """Postprocessing of a decollated item whose ``pred`` is (mean, sd) from :class:`DihedralInferer`: ``pred``
    becomes the mean alone, shape (1,) as without the option, and ``score_sd`` the deviation.

    Args:
        keys: the prediction key ("pred").
        spread_key: where the deviation goes.
    """

    def __init__(self, keys: KeysCollection = "pred", spread_key: str = "score_sd") -> None:
        super().__init__(keys)
        self.spread_key = spread_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = torch.as_tensor(d[key]).reshape(-1)
            if pred.numel() != 2:
                raise ValueError(f"{key} should hold (mean, sd) from DihedralInferer, got {pred.numel()} values")
            d[key], d[self.spread_key] = pred[:1], pred[1:]
        return d
