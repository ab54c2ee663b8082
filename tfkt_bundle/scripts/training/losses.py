"""Training losses for quality-score regression, chosen and weighted from the bundle config.

* ``MSELoss``: mean squared error on the score scale (the published TFKT recipe).
* ``PLCCLoss``: 1 - Pearson correlation of the batch; scale- and shift-free, range [0, 2].
* ``NormInNormLoss``: Li, Jiang & Jiang, "Norm-in-Norm Loss with Faster Convergence and Better Performance for
  Image Quality Assessment", ACM MM 2020. Predictions and labels are centred and divided by their q-norm, then the
  p-th power of the p-norm of their difference is scaled to [0, 1]; the paper's recommended setting is p=1, q=2.
* ``IQALoss``: weighted sum of the three, e.g.
  ``{"_target_": "scripts.training.losses.IQALoss", "mse": 1.0, "nin": 1.0}``.

Predictions and labels may be (B, 1) or (B,); both are flattened first, because ``nn.MSELoss`` on (B, 1) against (B,)
would broadcast to (B, B) and silently compare every prediction with every label.
"""

from __future__ import annotations

import torch
from torch import nn

from scripts.utils.scores import check_one_score_per_item

__all__ = ["MSELoss", "PLCCLoss", "NormInNormLoss", "IQALoss"]

# Floor of the norms, so that no division is 0/0 and no gradient is infinite.
_EPS = 1e-8
# Scores whose centred spread is below this fraction of their magnitude are treated as constant: for them the
# correlation is 0/0 (or float rounding noise) and its gradient is unbounded.
_REL_SPREAD = 1e-6


def _flatten_pair(pred: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1) or (B,) -> (B,) each, labels cast to the prediction dtype; one score per item is required."""
    check_one_score_per_item(pred.shape, "pred")
    check_one_score_per_item(label.shape, "label")
    if pred.shape[0] != label.shape[0]:
        raise ValueError(f"pred and label batch sizes differ: {pred.shape[0]} vs {label.shape[0]}")
    return pred.reshape(-1), label.reshape(-1).to(pred.dtype)


def _lp_norm(x: torch.Tensor, p: float) -> torch.Tensor:
    """(sum |x|^p)^(1/p) with the sum floored, so the gradient stays finite at x = 0 (torch.norm's is 0/0 for p=2)."""
    return x.abs().pow(p).sum().clamp_min(_EPS**p).pow(1.0 / p)


def _has_spread(centred: torch.Tensor, raw: torch.Tensor, p: float) -> torch.Tensor:
    spread = _lp_norm(centred.detach(), p)
    return spread > torch.clamp_min(_REL_SPREAD * _lp_norm(raw.detach(), p), 2 * _EPS)


def _defined(
    pred: torch.Tensor, label: torch.Tensor, pred_c: torch.Tensor, label_c: torch.Tensor, p: float
) -> torch.Tensor:
    """Boolean scalar tensor: the batch has at least 2 items and neither the predictions nor the labels are constant.

    A batch of 1, a batch whose labels are all equal (common on a 0.2-step label grid) or whose predictions have
    collapsed to one value carries no ordering information; such batches contribute 0 to the correlation terms and
    leave the MSE term, if weighted, to act.
    """
    return _has_spread(pred_c, pred, p) & _has_spread(label_c, label, p) & (pred.shape[0] > 1)


class MSELoss(nn.Module):
    """Mean squared error between predicted and subjective scores, shape-safe for (B, 1) vs (B,)."""

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        pred, label = _flatten_pair(pred, label)
        return torch.mean((pred - label) ** 2)


class PLCCLoss(nn.Module):
    """1 - Pearson linear correlation of the batch: 0 for a perfect positive linear relation, 2 for a negative one.

    Invariant to a positive affine rescaling of the predictions, so it teaches ranking and linearity but not the
    score scale; combine it with ``MSELoss`` when calibrated 0-4 outputs are needed. Undefined batches (see
    ``_defined``) return 0 with a zero gradient.
    """

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        pred, label = _flatten_pair(pred, label)
        pred_c, label_c = pred - pred.mean(), label - label.mean()
        denom = _lp_norm(pred_c, 2.0) * _lp_norm(label_c, 2.0)
        loss = 1.0 - (pred_c * label_c).sum() / denom
        # torch.where (not a Python branch) keeps the graph connected and avoids a device sync; the discarded branch
        # is finite thanks to the floored norms, so its zeroed gradient cannot turn into NaN.
        return torch.where(_defined(pred, label, pred_c, label_c, 2.0), loss, torch.zeros_like(loss))


class NormInNormLoss(nn.Module):
    """Norm-in-Norm loss (Li et al., ACM MM 2020).

    With x and y the predictions and labels of a batch of N items:
    x' = (x - mean x) / ||x - mean x||_q, likewise y'; loss = (||x' - y'||_p / c)^p with
    c = 2 N^max(0, 1/p - 1/q), the bound of ||x' - y'||_p, so that the loss lies in [0, 1].
    With p = q = 2 it equals (1 - PLCC) / 2. Undefined batches (see ``_defined``) return 0.

    Args:
        p: norm (and exponent) of the difference of the normalised scores, >= 1. The paper recommends 1.
        q: norm used to normalise the centred scores, >= 1. The paper recommends 2.
    """

    def __init__(self, p: float = 1.0, q: float = 2.0) -> None:
        super().__init__()
        if p < 1 or q < 1:
            # Below 1 the "norms" are not norms and |t|^p has an infinite derivative at 0.
            raise ValueError(f"p and q must be >= 1, got p={p}, q={q}")
        self.p, self.q = float(p), float(q)

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        pred, label = _flatten_pair(pred, label)
        pred_c, label_c = pred - pred.mean(), label - label.mean()
        diff = pred_c / _lp_norm(pred_c, self.q) - label_c / _lp_norm(label_c, self.q)
        n = pred.shape[0]
        bound = 2.0 * n ** max(0.0, 1.0 / self.p - 1.0 / self.q)
        # (sum |d|^p) / bound^p == (||d||_p / bound)^p without the p-th root, whose gradient is 0/0 at d = 0.
        loss = diff.abs().pow(self.p).sum() / bound**self.p
        return torch.where(_defined(pred, label, pred_c, label_c, self.q), loss, torch.zeros_like(loss))

    def extra_repr(self) -> str:
        return f"p={self.p:g}, q={self.q:g}"


class IQALoss(nn.Module):
    """Weighted sum ``mse * MSE + plcc * (1 - PLCC) + nin * Norm-in-Norm``; zero-weight terms are not computed.

    Args:
        mse: weight of the mean squared error (the published recipe is ``mse=1`` alone).
        plcc: weight of the PLCC loss.
        nin: weight of the Norm-in-Norm loss.
        nin_p: Norm-in-Norm difference norm p.
        nin_q: Norm-in-Norm normalisation norm q.
    """

    def __init__(
        self, mse: float = 1.0, plcc: float = 0.0, nin: float = 0.0, nin_p: float = 1.0, nin_q: float = 2.0
    ) -> None:
        super().__init__()
        weights = {"mse": float(mse), "plcc": float(plcc), "nin": float(nin)}
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(f"loss weights must be >= 0 with at least one > 0, got {weights}")
        self.weights = weights
        terms = {"mse": MSELoss(), "plcc": PLCCLoss(), "nin": NormInNormLoss(p=nin_p, q=nin_q)}
        self.terms = nn.ModuleDict({name: term for name, term in terms.items() if weights[name] > 0})

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        total = None
        for name, term in self.terms.items():
            value = self.weights[name] * term(pred, label)
            total = value if total is None else total + value
        return total

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={w:g}" for name, w in self.weights.items())
