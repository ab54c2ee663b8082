"""Evaluation statistics for image-quality prediction: correlations, logistic mappings, bootstrap CIs.

Two layers live here:

* numpy/SciPy functions on whole prediction sets (``plcc``, ``srocc``, ``krocc``, ``challenge_score``, ``rmse``,
  ``logistic_fit``, ``plcc_logistic``, ``rmse_logistic``, ``bootstrap_ci``, ``summarize``);
* MONAI ``CumulativeIterationMetric`` classes that buffer an epoch of (prediction, label) pairs, gather them across
  ranks through MONAI's ``Cumulative`` machinery and apply the functions above at ``aggregate()`` time (the ignite
  handlers wrapping them are in ``scripts.evaluation.handlers``).

Conventions follow the LDCTIQAC 2023 challenge: SciPy ``pearsonr``, ``spearmanr`` (average ranks) and ``kendalltau``
(tau-b) on raw predictions pooled over the test set; the overall score is |PLCC| + |SROCC| + |KROCC| with no logistic
mapping. PLCC and RMSE after a 4-parameter (VQEG form, with |beta4|) or 5-parameter (Sheikh et al., IEEE TIP 2006)
logistic mapping are reported beside them, labelled as such.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from scipy import optimize, stats

from scripts.utils.scores import check_one_score_per_item

__all__ = [
    "UndefinedStatisticError",
    "LogisticFitWarning",
    "LogisticMapping",
    "plcc",
    "srocc",
    "krocc",
    "challenge_score",
    "point_metrics",
    "rmse",
    "logistic_fit",
    "plcc_logistic",
    "rmse_logistic",
    "bootstrap_ci",
    "summarize",
    "PLCCMetric",
    "SROCCMetric",
    "KROCCMetric",
    "CorrelationMetric",
    "ChallengeScoreMetric",
]

MIN_ITEMS = 3
# exp() argument bound: exp(500) ~ 1e217 is finite in float64, so the logistic never overflows to inf.
_EXP_CLIP = 500.0


class UndefinedStatisticError(ValueError):
    """A statistic is undefined for these data: too few items, NaN/inf values or (for correlations) a constant input."""


class LogisticFitWarning(RuntimeWarning):
    """A logistic mapping did not converge and a linear fit was used instead."""


# ----------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------


def _as_vector(values: object, name: str) -> np.ndarray:
    """Return ``values`` as a float64 vector; (N,) and (N, 1) are accepted, anything with more per item is not."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    check_one_score_per_item(arr.shape, name)
    return arr.reshape(-1)


def _check_pair(
    pred: object, label: object, min_items: int = MIN_ITEMS, need_spread: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (prediction, label) pair and return both as float64 vectors.

    ``need_spread`` rejects constant inputs, for which a correlation is 0/0.
    """
    p, y = _as_vector(pred, "pred"), _as_vector(label, "label")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"pred and label lengths differ: {p.shape[0]} vs {y.shape[0]}")
    if p.shape[0] < min_items:
        raise UndefinedStatisticError(f"need at least {min_items} items, got {p.shape[0]}")
    for name, arr in (("pred", p), ("label", y)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise UndefinedStatisticError(f"{name} contains {bad} NaN/inf value(s)")
        if need_spread and np.ptp(arr) == 0:
            raise UndefinedStatisticError(f"{name} is constant ({arr[0]:g}): correlation is undefined")
    return p, y


# ----------------------------------------------------------------------------------------------------------------
# Point statistics
# ----------------------------------------------------------------------------------------------------------------


def plcc(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """Pearson linear correlation of raw predictions with labels (SciPy ``pearsonr``), signed.

    Raises:
        ValueError: lengths differ; ``UndefinedStatisticError`` (a ValueError) for < 3 items, NaN/inf or a constant.
    """
    p, y = _check_pair(pred, label)
    return float(stats.pearsonr(p, y)[0])


def srocc(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """Spearman rank-order correlation (SciPy ``spearmanr``, ties get average ranks), signed."""
    p, y = _check_pair(pred, label)
    return float(stats.spearmanr(p, y)[0])


def krocc(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """Kendall rank-order correlation, tau-b (SciPy ``kendalltau`` default, corrected for ties), signed."""
    p, y = _check_pair(pred, label)
    return float(stats.kendalltau(p, y)[0])


def point_metrics(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Raw ``plcc``, ``srocc``, ``krocc`` (signed) and the LDCTIQAC 2023 ``score`` |PLCC| + |SROCC| + |KROCC|."""
    p, y = _check_pair(pred, label)
    out = {"plcc": plcc(p, y), "srocc": srocc(p, y), "krocc": krocc(p, y)}
    # The challenge takes absolute values, so a model whose scores run the other way is not penalised.
    out["score"] = abs(out["plcc"]) + abs(out["srocc"]) + abs(out["krocc"])
    return out


def challenge_score(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """LDCTIQAC 2023 overall score |PLCC| + |SROCC| + |KROCC| on raw, pooled predictions (range 0-3)."""
    return point_metrics(pred, label)["score"]


def rmse(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """Root-mean-square error of raw predictions against labels (same units as the labels)."""
    p, y = _check_pair(pred, label, min_items=1, need_spread=False)
    return float(np.sqrt(np.mean((p - y) ** 2)))


# ----------------------------------------------------------------------------------------------------------------
# Logistic mappings
# ----------------------------------------------------------------------------------------------------------------


def _sigmoid_parts(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s = 1 / (1 + exp(z)) and ds/dz = -s (1 - s), with z clipped so exp() stays finite."""
    s = 1.0 / (1.0 + np.exp(np.clip(z, -_EXP_CLIP, _EXP_CLIP)))
    return s, -s * (1.0 - s)


def _scale4(b4: float) -> float:
    return max(abs(b4), np.finfo(np.float64).tiny)  # |b4| keeps the curve's direction fixed; tiny avoids 0/0


def _logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    s, _ = _sigmoid_parts(-(x - b3) / _scale4(b4))
    return (b1 - b2) * s + b2


def _logistic4_jac(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    a = _scale4(b4)
    s, ds = _sigmoid_parts(-(x - b3) / a)
    d_b3 = (b1 - b2) * ds / a
    d_b4 = (b1 - b2) * ds * (x - b3) / a**2 * np.sign(b4)
    return np.stack([s, 1.0 - s, d_b3, d_b4], axis=1)


def _logistic5(x: np.ndarray, b1: float, b2: float, b3: float, b4: float, b5: float) -> np.ndarray:
    """Sheikh et al. (2006) 5-parameter form: b1 * (1/2 - 1 / (1 + exp(b2 (x - b3)))) + b4 x + b5."""
    s, _ = _sigmoid_parts(b2 * (x - b3))
    return b1 * (0.5 - s) + b4 * x + b5


def _logistic5_jac(x: np.ndarray, b1: float, b2: float, b3: float, b4: float, b5: float) -> np.ndarray:
    s, ds = _sigmoid_parts(b2 * (x - b3))
    return np.stack([0.5 - s, -b1 * ds * (x - b3), b1 * ds * b2, x, np.ones_like(x)], axis=1)


def _linear(x: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    return slope * x + intercept


_FORMS: dict[str, Callable[..., np.ndarray]] = {"logistic4": _logistic4, "logistic5": _logistic5, "linear": _linear}
# Analytic Jacobians: MINPACK's forward differences scale their step with |parameter|, so a parameter started at
# (almost) zero, e.g. the centre b3 = mean(x) of centred predictions, would get a zero derivative and never move.
_JACOBIANS: dict[str, Callable[..., np.ndarray]] = {"logistic4": _logistic4_jac, "logistic5": _logistic5_jac}


@dataclass(frozen=True)
class LogisticMapping:
    """A fitted mapping from predictions to the label scale (monotone for the 4-parameter form); call it on them.

    Attributes:
        form: ``"logistic4"``, ``"logistic5"`` or ``"linear"`` (the fallback when a logistic fit fails).
        params: fitted parameters in the order of the formula (beta1, beta2, ...; slope, intercept for linear).
        fallback_reason: why the logistic fit was replaced by a linear one, ``None`` when it converged.
    """

    form: str
    params: tuple[float, ...]
    fallback_reason: str | None = None

    @property
    def converged(self) -> bool:
        """True when the requested logistic form was fitted (no linear fallback)."""
        return self.fallback_reason is None

    def __call__(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        return _FORMS[self.form](np.asarray(x, dtype=np.float64), *self.params)


def _initial_guesses(x: np.ndarray, y: np.ndarray, params: int) -> list[list[float]]:
    """Starting points scaled to the data; several are tried because the fitted optimum depends on the start."""
    sign = 1.0 if stats.pearsonr(x, y)[0] >= 0 else -1.0
    lo, hi, x_mean, x_std = float(y.min()), float(y.max()), float(x.mean()), float(x.std())
    if params == 4:
        # (b1, b2) = upper/lower asymptote reached as x grows; swapped when scores run against the labels.
        b1, b2 = (hi, lo) if sign > 0 else (lo, hi)
        return [[b1, b2, x_mean, x_std / 4.0], [b1, b2, x_mean, x_std]]
    # Data-scaled start, then the start of the widely used verify_performance.m (10, 0, mean(x), 0.1, 0.1).
    return [[sign * (hi - lo), 1.0 / x_std, x_mean, 0.0, float(y.mean())], [10.0, 0.0, x_mean, 0.1, 0.1]]


def _try_fit(form: str, x: np.ndarray, y: np.ndarray, start: list[float], maxfev: int) -> tuple[np.ndarray, float]:
    """One least-squares fit; returns (params, sum of squared errors) or raises RuntimeError/ValueError."""
    with warnings.catch_warnings():
        # The covariance estimate is not used, so its "could not be estimated" warning is noise here.
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        popt, _ = optimize.curve_fit(_FORMS[form], x, y, p0=start, jac=_JACOBIANS[form], maxfev=maxfev)
    fitted = _FORMS[form](x, *popt)
    if not np.all(np.isfinite(fitted)) or np.ptp(fitted) == 0:
        raise RuntimeError("the fitted curve is constant or not finite on the data")
    return popt, float(np.sum((fitted - y) ** 2))


def logistic_fit(
    pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray, params: int = 4, maxfev: int = 10000
) -> LogisticMapping:
    """Fit a 4- or 5-parameter logistic mapping from predictions to labels by least squares.

    Several data-scaled starting points are tried and the lowest squared error wins. When none converges, a
    ``LogisticFitWarning`` says so and a linear least-squares fit is returned instead (``mapping.form == "linear"``).

    Args:
        pred: predicted scores, shape (N,) or (N, 1).
        label: subjective scores, same length.
        params: 4 (VQEG form with |beta4|) or 5 (Sheikh et al. 2006 form).
        maxfev: maximum function evaluations per start, passed to ``scipy.optimize.curve_fit``.

    Returns:
        The fitted ``LogisticMapping``; call it on predictions to map them to the label scale.
    """
    if params not in (4, 5):
        raise ValueError(f"params must be 4 or 5, got {params!r}")
    x, y = _check_pair(pred, label)
    form = f"logistic{params}"
    best: tuple[np.ndarray, float] | None = None
    failures = []
    for start in _initial_guesses(x, y, params):
        try:
            popt, sse = _try_fit(form, x, y, start, maxfev)
        except (RuntimeError, ValueError, TypeError) as err:  # TypeError: fewer points than parameters
            failures.append(str(err).splitlines()[0])
            continue
        if best is None or sse < best[1]:
            best = (popt, sse)
    if best is not None:
        popt = best[0]
        if params == 4:
            popt = np.array([popt[0], popt[1], popt[2], abs(popt[3])])  # the formula only sees |beta4|
        return LogisticMapping(form, tuple(float(v) for v in popt))
    reason = "; ".join(dict.fromkeys(failures))
    warnings.warn(
        f"{params}-parameter logistic fit did not converge ({reason}); falling back to a linear fit",
        LogisticFitWarning,
        stacklevel=2,
    )
    slope, intercept = np.polyfit(x, y, 1)
    return LogisticMapping("linear", (float(slope), float(intercept)), fallback_reason=reason)


def plcc_logistic(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray, params: int = 4) -> float:
    """PLCC after mapping predictions with a fitted ``params``-parameter logistic (see ``logistic_fit``)."""
    x, y = _check_pair(pred, label)
    return plcc(logistic_fit(x, y, params=params)(x), y)


def rmse_logistic(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray, params: int = 4) -> float:
    """RMSE after mapping predictions with a fitted ``params``-parameter logistic (see ``logistic_fit``)."""
    x, y = _check_pair(pred, label)
    return rmse(logistic_fit(x, y, params=params)(x), y)


# ----------------------------------------------------------------------------------------------------------------
# Bootstrap over images
# ----------------------------------------------------------------------------------------------------------------


def _bootstrap(
    pred: np.ndarray, label: np.ndarray, stats_fn: Callable[..., Mapping[str, float]], n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """Evaluate ``stats_fn`` (named statistics of one (pred, label) set) on ``n_boot`` resamples of the items.

    Resamples on which the statistics are undefined (e.g. every drawn label equal, possible for tiny sets) are
    skipped with a warning, since a percentile CI over the remaining ones is still meaningful.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = pred.shape[0]
    values: dict[str, list[float]] = {}
    skipped = 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        try:
            drawn = stats_fn(pred[idx], label[idx])
        except UndefinedStatisticError:
            skipped += 1
            continue
        for name, value in drawn.items():
            values.setdefault(name, []).append(float(value))
    if skipped == n_boot:
        raise UndefinedStatisticError(f"the statistic is undefined on all {n_boot} bootstrap resamples")
    if skipped:
        warnings.warn(
            f"{skipped} of {n_boot} bootstrap resamples were degenerate and skipped", RuntimeWarning, stacklevel=3
        )
    return {name: np.asarray(v) for name, v in values.items()}


def _percentile_ci(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def bootstrap_ci(
    pred: Sequence[float] | np.ndarray,
    label: Sequence[float] | np.ndarray,
    stat_fn: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``stat_fn(pred, label)``, resampling images with replacement.

    Args:
        pred: predicted scores, shape (N,) or (N, 1).
        label: subjective scores, same length.
        stat_fn: statistic of (pred, label), e.g. ``plcc`` or ``challenge_score``.
        n_boot: number of resamples.
        alpha: 1 - confidence level (0.05 gives a 95 % interval).
        seed: seed of the resampling generator; the same seed gives the same interval.

    Returns:
        (low, high) bounds of the interval.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    p, y = _check_pair(pred, label)
    return _percentile_ci(_bootstrap(p, y, lambda a, b: {"stat": stat_fn(a, b)}, n_boot, seed)["stat"], alpha)


# ----------------------------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------------------------


def summarize(
    pred: Sequence[float] | np.ndarray,
    label: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """All evaluation numbers for one prediction set, as a JSON-ready dict.

    Keys: ``n``; raw ``plcc``, ``srocc``, ``krocc`` (signed), ``score`` (challenge: sum of absolute values),
    ``rmse``; logistic-mapped ``plcc_logistic4``, ``plcc_logistic5``, ``rmse_logistic4`` and the mapping actually
    used (``logistic4_form``, ``logistic5_form``: ``"linear"`` after a fallback); ``plcc_ci``, ``srocc_ci``,
    ``krocc_ci``, ``score_ci`` as (low, high) percentile bootstrap intervals over images (``None`` when
    ``n_boot == 0``) with ``n_boot``, ``ci_level`` and ``seed``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    p, y = _check_pair(pred, label)
    fit4, fit5 = logistic_fit(p, y, params=4), logistic_fit(p, y, params=5)
    out: dict = {"n": int(p.shape[0]), **point_metrics(p, y)}
    out["rmse"] = rmse(p, y)
    out["plcc_logistic4"] = plcc(fit4(p), y)
    out["plcc_logistic5"] = plcc(fit5(p), y)
    out["rmse_logistic4"] = rmse(fit4(p), y)
    out["logistic4_form"], out["logistic5_form"] = fit4.form, fit5.form
    out.update(_summary_cis(p, y, n_boot, alpha, seed))
    return out


def _summary_cis(p: np.ndarray, y: np.ndarray, n_boot: int, alpha: float, seed: int) -> dict:
    """Bootstrap CIs for the three correlations and the challenge score, all from the same resamples."""
    keys = ("plcc", "srocc", "krocc", "score")
    if n_boot == 0:
        return {f"{k}_ci": None for k in keys} | {"n_boot": 0, "ci_level": None, "seed": seed}
    samples = _bootstrap(p, y, point_metrics, n_boot, seed)
    cis = {f"{k}_ci": _percentile_ci(samples[k], alpha) for k in keys}
    return cis | {"n_boot": n_boot, "ci_level": 1.0 - alpha, "seed": seed}


# ----------------------------------------------------------------------------------------------------------------
# MONAI cumulative metrics
# ----------------------------------------------------------------------------------------------------------------


def _one_score_per_item(values: torch.Tensor, name: str) -> torch.Tensor:
    """(B,) or (B, 1) -> (B,); anything with more than one value per item is an error, not silently flattened."""
    check_one_score_per_item(values.shape, name)
    # Floating dtypes are kept: float64 labels such as 8/3 would otherwise lose digits before SciPy sees them.
    return values.reshape(-1) if values.is_floating_point() else values.reshape(-1).double()


class CorrelationMetric(CumulativeIterationMetric):
    """Buffers (prediction, label) scores over an epoch and computes one correlation statistic at ``aggregate()``.

    Base class: subclasses implement ``_statistic(pred, label) -> float`` on float64 numpy vectors.

    Correlations are not means of per-batch values, so every score is kept until the end of the epoch; the buffers
    are gathered across distributed ranks by ``Cumulative.get_buffer()``, as MONAI's ``ROCAUCMetric`` does.

    Args:
        undefined_value: value returned, with a warning, when the statistic is undefined (fewer than 3 items, NaN/inf
            or constant predictions, as an untrained network can produce). A finite number keeps checkpoint
            selection working (NaN never compares as better); ``None`` raises ``UndefinedStatisticError`` instead.
    """

    def __init__(self, undefined_value: float | None = 0.0) -> None:
        super().__init__()
        self.undefined_value = undefined_value

    def _statistic(self, pred: np.ndarray, label: np.ndarray) -> float:
        raise NotImplementedError

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if y is None:
            raise ValueError(f"{type(self).__name__} needs labels y")
        pred, label = _one_score_per_item(y_pred, "y_pred"), _one_score_per_item(y, "y")
        if pred.shape[0] != label.shape[0]:
            raise ValueError(f"y_pred and y batch sizes differ: {pred.shape[0]} vs {label.shape[0]}")
        return pred, label

    def aggregate(self) -> float:  # type: ignore[override]
        """Compute the statistic over everything buffered since the last ``reset()`` (all ranks)."""
        buffers = self.get_buffer()
        try:
            if buffers is None:
                raise UndefinedStatisticError("no predictions were buffered")
            pred, label = (b.detach().cpu().double().numpy() for b in buffers)
            return float(self._statistic(pred, label))
        except UndefinedStatisticError as err:
            if self.undefined_value is None:
                raise
            warnings.warn(
                f"{type(self).__name__}: {err}; returning {self.undefined_value}", RuntimeWarning, stacklevel=2
            )
            return float(self.undefined_value)


class PLCCMetric(CorrelationMetric):
    """Pearson linear correlation over all buffered items (raw predictions, signed)."""

    def _statistic(self, pred: np.ndarray, label: np.ndarray) -> float:
        return plcc(pred, label)


class SROCCMetric(CorrelationMetric):
    """Spearman rank-order correlation over all buffered items (signed)."""

    def _statistic(self, pred: np.ndarray, label: np.ndarray) -> float:
        return srocc(pred, label)


class KROCCMetric(CorrelationMetric):
    """Kendall tau-b over all buffered items (signed)."""

    def _statistic(self, pred: np.ndarray, label: np.ndarray) -> float:
        return krocc(pred, label)


class ChallengeScoreMetric(CorrelationMetric):
    """LDCTIQAC 2023 overall score |PLCC| + |SROCC| + |KROCC| over all buffered items (0-3, higher is better)."""

    def _statistic(self, pred: np.ndarray, label: np.ndarray) -> float:
        return challenge_score(pred, label)
