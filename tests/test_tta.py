"""scripts.nets.tta: the score's spread over a slice's 8 flips and 90-degree rotations, with every backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scripts.nets.tta import DihedralInferer, SplitScoreSpread

from model_helpers import noise_scorer


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> nn.Module:
    return noise_scorer(tmp_path_factory.mktemp("model"))


def _noisy_slices(shape, seed=0) -> torch.Tensor:
    """Slices with structure (a bright off-centre block) and noise, so that their views differ."""
    rng = np.random.default_rng(seed)
    images = np.clip(0.5 + rng.normal(0, 0.08, shape), 0, 1)
    images[..., 4:20, 6:30] += 0.3
    return torch.from_numpy(np.clip(images, 0, 1)).float()


def _views_by_hand(image: np.ndarray) -> list[np.ndarray]:
    """The dihedral group written out with numpy, independently of the module under test."""
    return [np.rot90(base, k) for base in (image, np.fliplr(image)) for k in range(4)]


@torch.no_grad()
@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (3, 1, 40, 56)], ids=["square", "non-square"])
def test_mean_and_sd_are_those_of_the_eight_separately_scored_views(scorer, shape):
    images = _noisy_slices(shape)
    got = DihedralInferer()(images, scorer)
    assert got.shape == (shape[0], 2)
    for i in range(shape[0]):
        views = _views_by_hand(images[i, 0].numpy())
        assert len({v.tobytes() for v in views}) == 8  # eight different inputs
        scores = np.array([float(scorer(torch.from_numpy(v.copy())[None, None])) for v in views])
        assert float(got[i, 0]) == pytest.approx(scores.mean(), abs=1e-5)
        assert float(got[i, 1]) == pytest.approx(scores.std(), abs=1e-5)
        assert float(got[i, 1]) > 1e-3  # a network is not invariant unless made so


class _InvariantScorer(nn.Module):
    """Mean and SD of the pixels, then a linear map: unchanged by any flip or rotation, by construction."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], dim=1))


@torch.no_grad()
def test_no_spread_for_an_invariant_network_or_a_constant_slice(scorer):
    torch.manual_seed(0)
    images = _noisy_slices((2, 1, 40, 56))
    invariant = DihedralInferer()(images, _InvariantScorer())
    assert invariant[:, 1].abs().max() < 1e-6 and (invariant[:, 0] != 0).all()
    constant = DihedralInferer()(torch.full((1, 1, 48, 48), 0.4), scorer)
    assert float(constant[0, 1]) < 1e-6
    assert float(DihedralInferer()(images, scorer)[:, 1].min()) > 1e-3  # the same network, a slice with structure


@torch.no_grad()
def test_openvino_compiles_each_orientation_of_a_non_square_slice_once(scorer):
    pytest.importorskip("openvino", reason="the OpenVINO backend is the optional 'export' extra")
    from scripts.nets.openvino_runtime import OpenVinoNetwork

    runtime = OpenVinoNetwork(scorer)
    images = _noisy_slices((2, 1, 40, 56))
    np.testing.assert_allclose(DihedralInferer()(images, runtime), DihedralInferer()(images, scorer), atol=1e-4)
    assert sorted(runtime._compiled) == [(40, 56), (56, 40)]  # rotations by 90 degrees swap H and W


def test_postprocessing_splits_the_mean_and_the_sd():
    item = SplitScoreSpread()({"pred": torch.tensor([2.5, 0.25]), "name": "a"})
    assert item["pred"].tolist() == [2.5] and item["score_sd"].tolist() == [0.25] and item["name"] == "a"
    with pytest.raises(ValueError, match="pred should hold \\(mean, sd\\) from DihedralInferer, got 1 values"):
        SplitScoreSpread()({"pred": torch.tensor([2.5])})
