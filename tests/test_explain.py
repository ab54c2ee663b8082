"""scripts.nets.explain: per-region scores that average back to the network's score, and which networks have them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scripts.nets.explain import region_score_map, token_maps, why_no_token_maps
from scripts.nets.networks import create_network

from model_helpers import noise_scorer


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> nn.Module:
    return noise_scorer(tmp_path_factory.mktemp("model"))


def _half_noisy(shape=(96, 64), sd=0.15, seed=0) -> np.ndarray:
    """A slice whose upper half is noisy and lower half clean."""
    image = np.full(shape, 0.5)
    rng = np.random.default_rng(seed)
    image[: shape[0] // 2] += rng.normal(0, sd, (shape[0] // 2, shape[1]))
    return np.clip(image, 0, 1).astype(np.float32)


@torch.no_grad()
@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_per_token_scores_average_back_to_the_score_with_the_pooling_weights(scorer, pooling):
    network = scorer if pooling == "attention" else create_network("hybrid_tiny", pooling="mean").eval()
    images = torch.from_numpy(np.stack([_half_noisy(seed=s) for s in range(3)])[:, None])
    maps = token_maps(network, images)
    assert maps.scores.shape == maps.weights.shape == (3, 3, 2)  # 96x64 slices: a 3x2 grid of regions
    score = network(images).reshape(-1)
    assert ((score > 0) & (score < 4)).all()  # unclamped, so the decomposition is exact
    torch.testing.assert_close(maps.weights.sum(dim=(1, 2)), torch.ones(3))
    torch.testing.assert_close((maps.weights * maps.scores).sum(dim=(1, 2)), score, atol=1e-5, rtol=0)
    torch.testing.assert_close(maps.score, score)
    assert maps.scores.std() > 0.01  # the regions differ


def test_the_region_map_has_the_slice_shape_and_finds_the_noisy_half(scorer):
    image = _half_noisy()
    regions = region_score_map(scorer, image)
    assert regions.shape == image.shape and regions.dtype == np.float32
    upper, lower = regions[: image.shape[0] // 2].mean(), regions[image.shape[0] // 2 :].mean()
    assert upper < lower - 0.2, (upper, lower)  # the network scores noise down, region by region
    with pytest.raises(ValueError, match="expected a 2-D slice"):
        region_score_map(scorer, image[None])


def test_networks_without_per_region_tokens_say_why():
    assert why_no_token_maps(create_network("hybrid_tiny")) is None
    assert "not a torch network with per-region tokens" in why_no_token_maps(nn.Conv2d(1, 1, 3))
    with pytest.raises(TypeError, match="Linear is not a torch network"):
        token_maps(nn.Linear(2, 1), torch.zeros(1, 1, 8, 8))


@pytest.mark.slow
def test_the_published_layout_has_no_per_region_tokens():
    assert "pools its CNN to one vector" in why_no_token_maps(create_network("tfkt_v2"))
