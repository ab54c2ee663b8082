"""Where in a slice the network sees poor quality: per-region scores of :class:`SpatialHybridIQA`.

That network pools its tokens (regions of the slice) with weights summing to 1 and regresses the score with a
linear head, so the head of one token is the score the slice would get if it were all like that region, and the
pooling weights average those per-token scores back to the slice's score exactly (before the eval-mode clamp to the
scale). ``TFKTV2Net`` has no such tokens: its CNN is pooled to one vector before the transformer, so no part of it
belongs to a region of the slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .networks import SpatialHybridIQA, TFKTV2Net

__all__ = ["TokenMaps", "why_no_token_maps", "token_maps", "region_score_map"]


@dataclass(frozen=True)
class TokenMaps:
    """Per-token scores and pooling weights of a batch, each (B, rows, columns); ``score`` is the network's (B,)."""

    scores: torch.Tensor
    weights: torch.Tensor
    score: torch.Tensor


def why_no_token_maps(network: object) -> str | None:
    """None when :func:`token_maps` can explain ``network``; else the reason, a sentence for the report."""
    if isinstance(network, TFKTV2Net):
        return "the tfkt_v2 network pools its CNN to one vector before the transformer, so it has no per-region tokens"
    if not isinstance(network, SpatialHybridIQA):
        return f"{type(network).__name__} is not a torch network with per-region tokens (ONNX and other runtimes)"
    if not isinstance(network.head.norm, nn.Identity):
        return "the network's score head normalizes the pooled vector, so per-token scores do not add up"
    return None


@torch.no_grad()
def token_maps(network: SpatialHybridIQA, images: torch.Tensor) -> TokenMaps:
    """Per-token scores and weights of (B, 1, H, W) images in [0, 1], in eval mode, on the network's device."""
    reason = why_no_token_maps(network)
    if reason is not None:
        raise TypeError(reason)
    network.eval()
    device = next(network.parameters()).device
    tokens, (rows, columns) = network.forward_tokens(images.to(device, torch.float32))
    weights = network.pool_weights(tokens)  # (B, N, 1)
    per_token = network.head.fc(tokens)  # linear: the weighted mean of these is the unclamped score
    score = network.forward_head(tokens).reshape(-1)
    shape = (tokens.shape[0], rows, columns)
    return TokenMaps(per_token.reshape(shape), weights.reshape(shape), score)


def region_score_map(network: SpatialHybridIQA, image: np.ndarray) -> np.ndarray:
    """The per-token scores of one 2-D slice as the network sees it, upsampled (bilinear) to the slice's shape."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got shape {array.shape}")
    maps = token_maps(network, torch.from_numpy(array)[None, None])
    upsampled = nn.functional.interpolate(maps.scores[:, None], size=array.shape, mode="bilinear", align_corners=False)
    return upsampled[0, 0].cpu().numpy()
