"""The noise baseline: ranks noisier slices lower, ignores offsets, measures known noise, rejects bad input."""

import math

import numpy as np
import pytest

from scripts.ctio.noise import body_mask, noise_sigma
from scripts.evaluation.noise_baseline import NOISE_FLOOR_HU, noise_hu, noise_score

SIZE = 128


def _phantom(size: int = SIZE) -> np.ndarray:
    """A windowed [0, 1] 'abdomen': air 0, an elliptic body 0.72 (soft tissue) with a darker and a brighter organ."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    image = np.zeros((size, size))
    image[(xx / 0.42) ** 2 + (yy / 0.32) ** 2 < 1] = 0.72
    image[((xx + 0.15) / 0.1) ** 2 + (yy / 0.12) ** 2 < 1] = 0.66
    image[((xx - 0.18) / 0.06) ** 2 + ((yy + 0.05) / 0.06) ** 2 < 1] = 0.95
    return image


def _noisy(sigma: float, seed: int = 0) -> np.ndarray:
    return _phantom() + np.random.default_rng(seed).normal(0.0, sigma, (SIZE, SIZE))


def test_more_noise_ranks_lower():
    scores = [noise_score(_noisy(sigma)) for sigma in (0.002, 0.005, 0.01, 0.02, 0.04, 0.08)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores


def test_lower_simulated_dose_ranks_lower():
    from scripts.synthesis.simulate import SimulatorConfig, SliceSimulator

    hu = _phantom() * 1400.0 - 1000.0  # back to HU through the default [-1000, 400] window
    sim = SliceSimulator(hu, pixel_size_mm=2.0, config=SimulatorConfig(full_dose_i0=1e5))
    scores = [noise_score((sim.simulate(dose, seed=1) + 1000.0) / 1400.0) for dose in (1.0, 0.3, 0.1, 0.03)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores


@pytest.mark.parametrize("offset", [-0.3, 0.25, 10.0])
def test_invariant_to_constant_offset(offset):
    image = _noisy(0.02)
    assert noise_sigma(image + offset) == pytest.approx(noise_sigma(image), rel=1e-9)
    assert np.array_equal(body_mask(image + offset), body_mask(image))


def test_white_noise_is_measured_at_its_std():
    # Known value: white Gaussian noise of std 0.01 window units = 14 HU in the 1400 HU wide default window,
    # on a uniform body (no organ edges) of 256x256, where the MAD's sampling error is about 1 %.
    size = 256
    body = np.where(_phantom(size) > 0, 0.72, 0.0)
    image = body + np.random.default_rng(3).normal(0.0, 0.01, (size, size))
    assert noise_sigma(image) == pytest.approx(0.01, rel=0.03)
    assert noise_hu(image) == pytest.approx(14.0, rel=0.03)
    assert noise_score(image) == pytest.approx(-math.log(14.0), abs=0.03)


def test_noiseless_ramp_scores_at_the_floor():
    # The kernel cancels constants and linear ramps exactly, so a smooth noiseless slice measures zero noise.
    ramp = np.linspace(0.0, 0.05, SIZE)[None, :]
    image = _phantom() + ramp * (_phantom() > 0)
    assert noise_sigma(image, mask=body_mask(_phantom())) == pytest.approx(0.0, abs=1e-12)
    assert noise_score(_phantom()) == pytest.approx(-math.log(NOISE_FLOOR_HU))


def test_saturated_pixels_are_left_out():
    # Dense bone clipped to 1 by the window carries no noise; it must not pull the estimate down.
    image = _noisy(0.02)
    clipped = image.copy()
    clipped[40:90, 30:100] = 1.0
    assert noise_sigma(clipped) == pytest.approx(noise_sigma(image), rel=0.08)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.array([]), "empty"),
        (np.zeros((0, 64)), "empty"),
        (np.full((SIZE, SIZE), np.nan), "NaN"),
        (np.where(_phantom() > 0.7, np.inf, _phantom()), "NaN/inf"),
        (np.full((SIZE, SIZE), 0.5), "constant"),
        (np.zeros((4, SIZE, SIZE)), "2-D"),
        (np.zeros((8, 8)), "at least"),
        (np.array([["a"] * 32] * 32), "real numbers"),
    ],
)
def test_rejects_bad_input(image, message):
    with pytest.raises(ValueError, match=message):
        noise_score(image)


def test_rejects_a_body_too_small_to_measure():
    image = np.zeros((SIZE, SIZE))
    image[60:64, 60:64] = 0.7  # 16 pixels of 'body'
    with pytest.raises(ValueError, match="body mask"):
        noise_score(image)


def test_rejects_a_mask_of_another_shape():
    with pytest.raises(ValueError, match="mask shape"):
        noise_sigma(_noisy(0.01), mask=np.ones((SIZE, SIZE // 2), dtype=bool))


def test_accepts_channel_first_slices():
    image = _noisy(0.01)
    assert noise_score(image[None, None]) == noise_score(image)
