"""scripts.losses: values against SciPy and hand arithmetic, invariances, gradients, degenerate batches, training."""

import math

import pytest
import torch
from scipy import stats

from scripts.training.losses import IQALoss, MSELoss, NormInNormLoss, PLCCLoss

ALL_LOSSES = {
    "mse": MSELoss,
    "plcc": PLCCLoss,
    "nin": NormInNormLoss,
    "nin_p2q2": lambda: NormInNormLoss(p=2, q=2),
    "combined": lambda: IQALoss(mse=1.0, plcc=0.5, nin=0.5),
}
CORRELATION_LOSSES = {key: ALL_LOSSES[key] for key in ("plcc", "nin", "nin_p2q2")}


def _pair(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    label = torch.rand(n, generator=gen, dtype=torch.float64) * 4
    return label + torch.randn(n, generator=gen, dtype=torch.float64), label


def test_mse_flattens_column_predictions_instead_of_broadcasting():
    pred, label = _pair()
    expected = torch.mean((pred - label) ** 2)
    assert MSELoss()(pred[:, None], label).item() == pytest.approx(expected.item(), rel=1e-12)
    assert MSELoss()(pred, label[:, None]).item() == pytest.approx(expected.item(), rel=1e-12)


def test_plcc_loss_is_one_minus_scipy_pearson():
    pred, label = _pair()
    expected = 1.0 - stats.pearsonr(pred.numpy(), label.numpy())[0]
    assert PLCCLoss()(pred[:, None], label).item() == pytest.approx(expected, abs=1e-10)


def test_plcc_loss_is_zero_for_linear_and_two_for_anticorrelated_predictions():
    _, label = _pair()
    assert PLCCLoss()(3.0 * label + 2.0, label).item() == pytest.approx(0.0, abs=1e-7)
    assert PLCCLoss()(-2.0 * label + 1.0, label).item() == pytest.approx(2.0, abs=1e-7)


def test_norm_in_norm_hand_computed_example():
    # x = (0, 1, 2), y = (0, 2, 1): centred and L2-normalised x' = (-1, 0, 1)/sqrt2, y' = (-1, 1, 0)/sqrt2;
    # ||x' - y'||_1 = sqrt2; bound c = 2 * 3^(1 - 1/2); loss = sqrt2 / (2 sqrt3) = 1/sqrt6.
    loss = NormInNormLoss(p=1, q=2)(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 2.0, 1.0]))
    assert loss.item() == pytest.approx(1 / math.sqrt(6), abs=1e-6)


def test_norm_in_norm_with_p2_q2_is_half_of_one_minus_pearson():
    pred, label = _pair(seed=3)
    expected = (1.0 - stats.pearsonr(pred.numpy(), label.numpy())[0]) / 2
    assert NormInNormLoss(p=2, q=2)(pred, label).item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("p, q", [(1, 2), (2, 2), (1, 1), (2, 1)])
def test_norm_in_norm_lies_in_unit_interval_and_vanishes_for_linear_predictions(p, q):
    loss_fn = NormInNormLoss(p=p, q=q)
    _, label = _pair(n=12, seed=1)
    assert loss_fn(5.0 * label - 1.0, label).item() == pytest.approx(0.0, abs=1e-7)
    for seed in range(5):
        pred, label = _pair(n=12, seed=seed)
        assert 0.0 < loss_fn(pred, label).item() <= 1.0 + 1e-12
        assert 0.0 < loss_fn(-label, label).item() <= 1.0 + 1e-12  # the bound is reached for q = p


@pytest.mark.parametrize("key", list(CORRELATION_LOSSES))
def test_correlation_losses_are_invariant_to_positive_affine_rescaling(key):
    loss_fn = CORRELATION_LOSSES[key]()
    pred, label = _pair(seed=2)
    reference = loss_fn(pred, label).item()
    assert reference > 0.05  # otherwise the comparison below would be trivially true
    assert loss_fn(7.5 * pred - 3.0, label).item() == pytest.approx(reference, rel=1e-9)
    assert loss_fn(pred, 0.25 * label + 10.0).item() == pytest.approx(reference, rel=1e-9)


def test_mse_is_not_scale_invariant():
    pred, label = _pair()
    assert MSELoss()(2 * pred, label).item() != pytest.approx(MSELoss()(pred, label).item())


@pytest.mark.parametrize("key", list(ALL_LOSSES))
@pytest.mark.parametrize("case", ["random", "single_item", "constant_labels", "constant_predictions", "perfect"])
def test_gradients_are_finite(key, case):
    pred, label = _pair(n=8)
    if case == "single_item":
        pred, label = pred[:1], label[:1]
    elif case == "constant_labels":
        label = torch.full_like(label, 2.2)
    elif case == "constant_predictions":
        pred = torch.full_like(pred, 1.5)
    elif case == "perfect":
        pred = label.clone()
    pred = pred.float()[:, None].requires_grad_(True)
    loss = ALL_LOSSES[key]()(pred, label)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("key", list(CORRELATION_LOSSES))
@pytest.mark.parametrize("case", ["single_item", "constant_labels", "constant_predictions"])
def test_correlation_terms_contribute_zero_on_undefined_batches(key, case):
    pred, label = _pair(n=6)
    if case == "single_item":
        pred, label = pred[:1], label[:1]
    elif case == "constant_labels":
        label = torch.full_like(label, 3.0)
    else:
        pred = torch.full_like(pred, 0.7)
    pred.requires_grad_(True)
    loss = CORRELATION_LOSSES[key]()(pred, label)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(pred.grad) == 0


def test_combined_loss_is_the_weighted_sum_and_skips_zero_weights():
    pred, label = _pair()
    combined = IQALoss(mse=0.5, plcc=2.0, nin=0.25)(pred, label)
    expected = 0.5 * MSELoss()(pred, label) + 2.0 * PLCCLoss()(pred, label) + 0.25 * NormInNormLoss()(pred, label)
    assert combined.item() == pytest.approx(expected.item(), rel=1e-12)
    assert set(IQALoss().terms) == {"mse"}
    assert IQALoss()(pred, label).item() == pytest.approx(MSELoss()(pred, label).item(), rel=1e-12)


@pytest.mark.parametrize("weights", [{"mse": 0.0}, {"mse": 1.0, "plcc": -1.0}])
def test_combined_loss_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="loss weights"):
        IQALoss(**weights)


def test_norm_in_norm_rejects_norms_below_one():
    with pytest.raises(ValueError, match=">= 1"):
        NormInNormLoss(p=0.5)


@pytest.mark.parametrize(
    "pred, label, match",
    [
        (torch.zeros(4, 2), torch.zeros(4), "pred must hold one score per item"),
        (torch.zeros(4), torch.zeros(4, 3), "label must hold one score per item"),
        (torch.zeros(4), torch.zeros(5), "batch sizes differ"),
    ],
)
@pytest.mark.parametrize("key", list(ALL_LOSSES))
def test_bad_shapes_raise(key, pred, label, match):
    with pytest.raises(ValueError, match=match):
        ALL_LOSSES[key]()(pred, label)


@pytest.mark.parametrize("key", list(ALL_LOSSES))
def test_a_few_optimisation_steps_lower_the_loss(key):
    torch.manual_seed(0)
    features = torch.randn(64, 5)
    label = features @ torch.tensor([0.8, -0.5, 0.3, 0.0, 0.2]) + 2.0 + 0.05 * torch.randn(64)
    model = torch.nn.Linear(5, 1)
    loss_fn = ALL_LOSSES[key]()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for step in range(40):
        batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
        loss = loss_fn(model(features[batch]), label[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn(model(features), label).item()
        initial = loss_fn(torch.nn.Linear(5, 1).requires_grad_(False)(features), label).item()
    assert final < 0.5 * losses[0]
    assert final < initial
