"""scripts.metrics and scripts.handlers: every number against SciPy, hand-computed ties, fits, bootstrap, engines."""

import math
import warnings

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine
from scipy import stats

from scripts.evaluation import handlers, metrics
from scripts.evaluation.metrics import UndefinedStatisticError

# Hand-computed example with ties in both vectors (see test_hand_computed_example_with_ties for the arithmetic).
TIES_PRED = [1.0, 2.0, 2.0, 3.0]
TIES_LABEL = [1.0, 2.0, 3.0, 3.0]


def _scored_set(n: int, seed: int = 0, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Predictions around labels on the LDCTIQAC 0.2-step grid (so labels have many ties)."""
    rng = np.random.default_rng(seed)
    label = np.round(rng.uniform(0, 4, n) * 5) / 5
    return label + rng.normal(0, noise, n), label


def _scipy_all(pred, label) -> dict:
    p, s, k = stats.pearsonr(pred, label)[0], stats.spearmanr(pred, label)[0], stats.kendalltau(pred, label)[0]
    return {"plcc": p, "srocc": s, "krocc": k, "score": abs(p) + abs(s) + abs(k)}


# ------------------------------------------------------------------------------------------------------------------
# Point statistics
# ------------------------------------------------------------------------------------------------------------------


def test_hand_computed_example_with_ties():
    # PLCC: centred x = (-1, 0, 0, 1), y = (-5, -1, 3, 3)/4 -> sum xy = 2, sum x^2 = 2, sum y^2 = 11/4.
    assert metrics.plcc(TIES_PRED, TIES_LABEL) == pytest.approx(2 / math.sqrt(2 * 11 / 4), abs=1e-12)
    # SROCC: average ranks x = (1, 2.5, 2.5, 4), y = (1, 2, 3.5, 3.5) -> Pearson of ranks = 3.75 / 4.5.
    assert metrics.srocc(TIES_PRED, TIES_LABEL) == pytest.approx(5 / 6, abs=1e-12)
    # KROCC tau-b: 4 concordant, 0 discordant, one pair tied only in x, one only in y -> 4 / sqrt(5 * 5).
    assert metrics.krocc(TIES_PRED, TIES_LABEL) == pytest.approx(0.8, abs=1e-12)
    expected = 2 / math.sqrt(5.5) + 5 / 6 + 0.8
    assert metrics.challenge_score(TIES_PRED, TIES_LABEL) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_equal_scipy(seed):
    pred, label = _scored_set(120, seed=seed)
    expected = _scipy_all(pred, label)
    assert metrics.plcc(pred, label) == pytest.approx(expected["plcc"], abs=1e-12)
    assert metrics.srocc(pred, label) == pytest.approx(expected["srocc"], abs=1e-12)
    assert metrics.krocc(pred, label) == pytest.approx(expected["krocc"], abs=1e-12)
    assert metrics.challenge_score(pred, label) == pytest.approx(expected["score"], abs=1e-12)
    assert metrics.rmse(pred, label) == pytest.approx(np.sqrt(np.mean((pred - label) ** 2)), abs=1e-12)


def test_correlations_are_signed_but_score_takes_absolute_values():
    pred, label = _scored_set(60)
    assert metrics.plcc(-pred, label) == pytest.approx(-metrics.plcc(pred, label))
    assert metrics.krocc(-pred, label) == pytest.approx(-metrics.krocc(pred, label))
    assert metrics.challenge_score(-pred, label) == pytest.approx(metrics.challenge_score(pred, label))


def test_accepts_column_vectors_and_tensors():
    pred, label = _scored_set(30)
    expected = metrics.plcc(pred, label)
    assert metrics.plcc(pred[:, None], torch.from_numpy(label)[:, None]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "pred, label, error, match",
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], ValueError, "lengths differ: 3 vs 2"),
        ([1.0, 2.0], [1.0, 2.0], UndefinedStatisticError, "at least 3 items"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], UndefinedStatisticError, "pred contains 1 NaN/inf"),
        ([1.0, 2.0, 3.0], [1.0, np.inf, 3.0], UndefinedStatisticError, "label contains 1 NaN/inf"),
        ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], UndefinedStatisticError, "pred is constant"),
        ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0], UndefinedStatisticError, "label is constant"),
        (np.ones((3, 2)), [1.0, 2.0, 3.0], ValueError, "one score per item"),
    ],
)
@pytest.mark.parametrize("fn", [metrics.plcc, metrics.srocc, metrics.krocc, metrics.challenge_score, metrics.summarize])
def test_bad_inputs_raise_one_line_errors(fn, pred, label, error, match):
    with pytest.raises(error, match=match) as info:
        fn(pred, label)
    assert "\n" not in str(info.value)


def test_undefined_statistic_error_is_a_value_error():
    assert issubclass(UndefinedStatisticError, ValueError)


# ------------------------------------------------------------------------------------------------------------------
# Logistic mappings
# ------------------------------------------------------------------------------------------------------------------


def test_logistic4_recovers_a_noiseless_mapping():
    x = np.linspace(-3, 3, 61)
    y = metrics._logistic4(x, 4.0, 0.0, 0.5, 0.7)
    assert metrics.plcc(x, y) < 0.98  # the relation is far from linear
    mapping = metrics.logistic_fit(x, y, params=4)
    assert mapping.form == "logistic4" and mapping.converged
    np.testing.assert_allclose(mapping.params, [4.0, 0.0, 0.5, 0.7], atol=1e-4)
    assert metrics.plcc_logistic(x, y, params=4) == pytest.approx(1.0, abs=1e-8)
    assert metrics.rmse_logistic(x, y, params=4) == pytest.approx(0.0, abs=1e-5)


def test_logistic4_fits_scores_that_run_against_the_labels():
    x = np.linspace(-3, 3, 61)
    y = metrics._logistic4(-x, 4.0, 0.0, 0.5, 0.7)
    assert metrics.plcc_logistic(x, y, params=4) == pytest.approx(1.0, abs=1e-8)


def test_logistic5_recovers_a_noiseless_mapping():
    x = np.linspace(-3, 3, 61)
    y = metrics._logistic5(x, 3.0, 2.0, 0.3, 0.2, 1.0)
    assert metrics.plcc(x, y) < 0.98
    mapping = metrics.logistic_fit(x, y, params=5)
    assert mapping.form == "logistic5"
    np.testing.assert_allclose(mapping(x), y, atol=1e-6)
    assert metrics.plcc_logistic(x, y, params=5) == pytest.approx(1.0, abs=1e-8)


def test_logistic_fit_falls_back_to_linear_with_a_warning():
    pred, label = _scored_set(50)
    with pytest.warns(metrics.LogisticFitWarning, match="falling back to a linear fit"):
        mapping = metrics.logistic_fit(pred, label, params=4, maxfev=1)
    assert mapping.form == "linear" and not mapping.converged and mapping.fallback_reason
    np.testing.assert_allclose(mapping.params, np.polyfit(pred, label, 1), rtol=1e-10)


def test_logistic_fit_rejects_other_parameter_counts():
    with pytest.raises(ValueError, match="params must be 4 or 5"):
        metrics.logistic_fit(*_scored_set(20), params=3)


# ------------------------------------------------------------------------------------------------------------------
# Bootstrap and summary
# ------------------------------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_estimate_and_is_reproducible():
    pred, label = _scored_set(100)
    ci = metrics.bootstrap_ci(pred, label, metrics.plcc, n_boot=200, seed=3)
    assert ci[0] < metrics.plcc(pred, label) < ci[1]
    assert metrics.bootstrap_ci(pred, label, metrics.plcc, n_boot=200, seed=3) == ci
    assert metrics.bootstrap_ci(pred, label, metrics.plcc, n_boot=200, seed=4) != ci


def test_bootstrap_ci_narrows_with_more_images():
    widths = []
    for n in (40, 640):
        low, high = metrics.bootstrap_ci(*_scored_set(n, seed=n), metrics.srocc, n_boot=200, seed=0)
        widths.append(high - low)
    assert widths[1] < 0.5 * widths[0]  # ~1/sqrt(n): 16x the images should give ~1/4 of the width


def test_bootstrap_skips_degenerate_resamples_with_a_warning():
    # With 2 of 3 labels equal, about 1 in 4 resamples draws a constant label vector.
    with pytest.warns(RuntimeWarning, match="degenerate and skipped"):
        low, high = metrics.bootstrap_ci([0.1, 0.2, 0.9], [0.0, 0.0, 1.0], metrics.plcc, n_boot=100)
    assert -1.0 <= low <= high <= 1.0


def test_bootstrap_rejects_bad_arguments():
    pred, label = _scored_set(20)
    with pytest.raises(ValueError, match="n_boot"):
        metrics.bootstrap_ci(pred, label, metrics.plcc, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        metrics.bootstrap_ci(pred, label, metrics.plcc, alpha=1.5)


def test_summarize_matches_scipy_and_its_own_bootstrap():
    pred, label = _scored_set(80)
    summary = metrics.summarize(pred, label, n_boot=100, seed=7)
    expected = _scipy_all(pred, label)
    for key in ("plcc", "srocc", "krocc", "score"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-12)
        assert summary[f"{key}_ci"][0] < summary[key] < summary[f"{key}_ci"][1]
    # The CIs come from shared resamples, identical to separate bootstrap_ci calls with the same seed.
    assert summary["score_ci"] == pytest.approx(
        metrics.bootstrap_ci(pred, label, metrics.challenge_score, n_boot=100, seed=7), abs=1e-12
    )
    assert summary["krocc_ci"] == metrics.bootstrap_ci(pred, label, metrics.krocc, n_boot=100, seed=7)
    fit4 = metrics.logistic_fit(pred, label, params=4)
    assert summary["plcc_logistic4"] == pytest.approx(stats.pearsonr(fit4(pred), label)[0], abs=1e-12)
    assert summary["rmse_logistic4"] == pytest.approx(np.sqrt(np.mean((fit4(pred) - label) ** 2)), abs=1e-12)
    assert summary["plcc_logistic5"] == pytest.approx(metrics.plcc_logistic(pred, label, params=5), abs=1e-12)
    assert summary["n"] == 80 and summary["n_boot"] == 100 and summary["ci_level"] == pytest.approx(0.95)


def test_summarize_without_bootstrap_has_no_intervals():
    summary = metrics.summarize(*_scored_set(30), n_boot=0)
    assert summary["plcc_ci"] is None and summary["score_ci"] is None and summary["n_boot"] == 0


def _resampled(pred, label, stat, n_boot: int, seed: int) -> np.ndarray:
    """The bootstrap statistics, drawn independently of the module with the same generator calls."""
    rng = np.random.default_rng(seed)
    n = len(pred)
    return np.array([stat(pred[idx], label[idx]) for idx in (rng.integers(0, n, size=n) for _ in range(n_boot))])


def test_bootstrap_ci_bounds_are_the_two_sided_quantiles():
    pred, label = _scored_set(30, seed=2, noise=1.0)
    samples = _resampled(pred, label, lambda p, y: stats.pearsonr(p, y)[0], n_boot=300, seed=11)
    ci95 = metrics.bootstrap_ci(pred, label, metrics.plcc, n_boot=300, seed=11)
    ci90 = metrics.bootstrap_ci(pred, label, metrics.plcc, n_boot=300, alpha=0.1, seed=11)
    assert ci95 == pytest.approx(tuple(np.quantile(samples, [0.025, 0.975])), abs=1e-12)
    assert ci90 == pytest.approx(tuple(np.quantile(samples, [0.05, 0.95])), abs=1e-12)
    assert ci95[0] < ci90[0] < ci90[1] < ci95[1]


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_summarize_score_ci_is_the_quantile_of_resampled_challenge_scores(alpha):
    pred, label = _scored_set(30, seed=4, noise=1.0)
    samples = _resampled(pred, label, lambda p, y: _scipy_all(p, y)["score"], n_boot=150, seed=5)
    summary = metrics.summarize(pred, label, n_boot=150, alpha=alpha, seed=5)
    expected = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    assert summary["score_ci"] == pytest.approx(tuple(expected), abs=1e-12)
    assert summary["ci_level"] == pytest.approx(1 - alpha)


# ------------------------------------------------------------------------------------------------------------------
# MONAI cumulative metrics
# ------------------------------------------------------------------------------------------------------------------

METRIC_CLASSES = {
    "plcc": metrics.PLCCMetric,
    "srocc": metrics.SROCCMetric,
    "krocc": metrics.KROCCMetric,
    "score": metrics.ChallengeScoreMetric,
}


def _batches(pred: np.ndarray, label: np.ndarray, sizes=(7, 1, 12, 20)):
    """Split into batches of uneven sizes, alternating (B, 1) and (B,) shapes as networks and loaders produce."""
    start = 0
    for i, size in enumerate(sizes):
        p, y = torch.from_numpy(pred[start : start + size]), torch.from_numpy(label[start : start + size])
        yield (p[:, None], y) if i % 2 == 0 else (p, y[:, None])
        start += size


@pytest.mark.parametrize("key", list(METRIC_CLASSES))
def test_cumulative_metric_over_iterations_equals_scipy_on_concatenation(key):
    pred, label = _scored_set(40, seed=5)
    metric = METRIC_CLASSES[key]()
    for p, y in _batches(pred, label):
        metric(y_pred=p, y=y)
    assert metric.aggregate() == pytest.approx(_scipy_all(pred, label)[key], abs=1e-12)
    metric.reset()
    metric(y_pred=torch.from_numpy(pred[:10]), y=torch.from_numpy(label[:10]))
    assert metric.aggregate() == pytest.approx(_scipy_all(pred[:10], label[:10])[key], abs=1e-12)


def test_cumulative_metric_accepts_lists_of_channel_first_items():
    pred, label = _scored_set(15, seed=2)
    metric = metrics.ChallengeScoreMetric()
    metric(y_pred=[torch.tensor([v]) for v in pred], y=[torch.tensor(v) for v in label])
    assert metric.aggregate() == pytest.approx(_scipy_all(pred, label)["score"], abs=1e-12)


def test_cumulative_metric_reports_undefined_value_with_a_warning():
    metric = metrics.PLCCMetric()
    metric(y_pred=torch.full((5, 1), 2.0), y=torch.arange(5.0))
    with pytest.warns(RuntimeWarning, match="pred is constant"):
        assert metric.aggregate() == 0.0
    with pytest.warns(RuntimeWarning, match="no predictions"):
        assert metrics.KROCCMetric(undefined_value=-1.0).aggregate() == -1.0
    strict = metrics.SROCCMetric(undefined_value=None)
    strict(y_pred=torch.arange(2.0), y=torch.arange(2.0))
    with pytest.raises(UndefinedStatisticError, match="at least 3 items"):
        strict.aggregate()


@pytest.mark.parametrize(
    "y_pred, y, match",
    [
        (torch.zeros(4, 2), torch.zeros(4), "one score per item"),
        (torch.zeros(4), torch.zeros(3), "batch sizes differ"),
        (torch.zeros(4), None, "needs labels"),
    ],
)
def test_cumulative_metric_rejects_bad_batches(y_pred, y, match):
    with pytest.raises(ValueError, match=match):
        metrics.PLCCMetric()(y_pred=y_pred, y=y)


# ------------------------------------------------------------------------------------------------------------------
# Ignite handlers
# ------------------------------------------------------------------------------------------------------------------

HANDLER_CLASSES = {
    "plcc": handlers.PLCC,
    "srocc": handlers.SROCC,
    "krocc": handlers.KROCC,
    "score": handlers.ChallengeScore,
}


def test_handlers_in_an_ignite_engine_follow_each_epoch():
    base_pred, label = _scored_set(40, seed=9)
    noise = np.random.default_rng(1).normal(0, 0.7, 40)
    epoch_pred = {epoch: base_pred + epoch * noise for epoch in (1, 2)}  # every epoch sees different predictions
    batches = [(0, 7), (7, 8), (8, 20), (20, 40)]

    def step(engine, bounds):
        start, stop = bounds
        pred = torch.from_numpy(epoch_pred[engine.state.epoch][start:stop])[:, None]
        return {"pred": pred, "label": torch.from_numpy(label[start:stop])}

    engine = Engine(step)
    for name, cls in HANDLER_CLASSES.items():
        cls(output_transform=from_engine(["pred", "label"])).attach(engine, name)
    seen = {}
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.update({e.state.epoch: dict(e.state.metrics)}))
    engine.run(batches, max_epochs=2)
    for epoch in (1, 2):
        expected = _scipy_all(epoch_pred[epoch], label)
        for name in HANDLER_CLASSES:
            assert seen[epoch][name] == pytest.approx(expected[name], abs=1e-12)
    assert seen[1]["score"] != pytest.approx(seen[2]["score"])  # buffers were reset between epochs


def test_challenge_score_as_key_metric_of_a_supervised_evaluator():
    torch.manual_seed(0)
    images, label = torch.randn(30, 4), torch.from_numpy(_scored_set(30, seed=4)[1]).float()
    loader = torch.utils.data.DataLoader([{"image": i, "label": y} for i, y in zip(images, label)], batch_size=8)
    network = torch.nn.Linear(4, 1)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=network,
        key_val_metric={"val_score": handlers.ChallengeScore(output_transform=from_engine(["pred", "label"]))},
        additional_metrics={"val_plcc": handlers.PLCC(output_transform=from_engine(["pred", "label"]))},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an undefined-statistic fallback would hide a bug here
        evaluator.run()
    with torch.no_grad():
        pred = network(images).squeeze(1).numpy()
    expected = _scipy_all(pred, label.numpy())
    assert evaluator.state.metrics["val_score"] == pytest.approx(expected["score"], abs=1e-6)
    assert evaluator.state.metrics["val_plcc"] == pytest.approx(expected["plcc"], abs=1e-6)
    assert evaluator.state.best_metric == pytest.approx(expected["score"], abs=1e-6)


def test_logistic_fit_with_fewer_points_than_parameters_falls_back_to_linear():
    with pytest.warns(metrics.LogisticFitWarning, match="falling back to a linear fit"):
        mapping = metrics.logistic_fit([0.0, 1.0, 3.0], [1.0, 2.0, 4.0], params=4)
    assert mapping.form == "linear"
    assert mapping(np.array([2.0])) == pytest.approx([3.0], abs=0.2)
