"""Tests of scripts.synthesis.labels: the SSIM and GMSD x texture full-reference rules and their CT masks."""

import numpy as np
import pytest
from scipy import ndimage

from scripts.synthesis.labels import (
    full_reference_scores,
    gmsd,
    gmsd_to_score,
    pooling_mask,
    ssim_to_score,
    texture_mask,
    texture_transfer,
)


@pytest.fixture(scope="module")
def textured() -> np.ndarray:
    """A smooth scene with fine texture on it, in [0, 1]: what a reference slice holds."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    scene = 0.5 + 0.2 * np.sin(6 * xx) * np.cos(4 * yy) + 0.2 * (np.hypot(xx - 0.5, yy - 0.5) < 0.2)
    return np.clip(scene + 0.03 * rng.standard_normal(scene.shape), 0, 1)


def test_ssim_rule_end_points():
    assert ssim_to_score(1.0) == 4.0 and ssim_to_score(0.95) == 4.0
    assert ssim_to_score(0.15) == 0.0 and ssim_to_score(-0.2) == 0.0
    assert ssim_to_score(0.55) == pytest.approx(2.0)


def test_gmsd_rule_end_points():
    assert gmsd_to_score(0.0) == 4.0 and gmsd_to_score(0.02) == 4.0
    assert gmsd_to_score(0.25) == 0.0 and gmsd_to_score(0.4) == 0.0
    assert gmsd_to_score(0.135) == pytest.approx(2.0)


def test_gmsd_is_zero_for_the_reference_and_grows_with_noise_and_with_blur(textured):
    rng = np.random.default_rng(1)
    assert gmsd(textured, textured) == 0.0
    noise = [gmsd(textured, textured + s * rng.standard_normal(textured.shape)) for s in (0.02, 0.05, 0.1)]
    blur = [gmsd(textured, ndimage.gaussian_filter(textured, s)) for s in (0.7, 1.5, 3.0)]
    assert noise == sorted(noise) and noise[0] > 0.01
    assert blur == sorted(blur) and blur[0] > 0.01


def test_texture_transfer_ignores_noise_and_falls_with_smoothing(textured):
    rng = np.random.default_rng(2)
    noisy = textured + 0.1 * rng.standard_normal(textured.shape)
    assert texture_transfer(textured, textured) == pytest.approx(1.0)
    assert texture_transfer(textured, noisy) == pytest.approx(1.0, abs=0.05)
    smoothed = [texture_transfer(textured, ndimage.gaussian_filter(textured, s)) for s in (0.7, 1.5, 3.0)]
    assert smoothed == sorted(smoothed, reverse=True) and smoothed[-1] < 0.3


def test_the_texture_rule_ranks_smoothing_below_the_noisy_image_it_smoothed(textured):
    """SSIM rewards a denoiser that wipes out texture; the GMSD x texture rule must not."""
    rng = np.random.default_rng(3)
    noisy = np.clip(textured + 0.03 * rng.standard_normal(textured.shape), 0, 1)
    smoothed = ndimage.gaussian_filter(noisy, 1.5)
    noisy_scores = full_reference_scores(textured, noisy, "gmsd_texture")
    smoothed_scores = full_reference_scores(textured, smoothed, "gmsd_texture")
    assert smoothed_scores["score"] < noisy_scores["score"]
    assert smoothed_scores["texture"] < 0.6 < noisy_scores["texture"]
    assert full_reference_scores(textured, textured, "gmsd_texture")["score"] == 4.0


def test_unknown_rule_and_bad_shapes_are_refused(textured):
    with pytest.raises(ValueError, match="unknown label rule 'psnr'; valid rules: ssim, gmsd_texture"):
        full_reference_scores(textured, textured, "psnr")
    with pytest.raises(ValueError, match="two 2-D images of one shape"):
        gmsd(textured, textured[:64])
    with pytest.raises(ValueError, match="select at least one pixel"):
        gmsd(textured, textured, np.zeros(textured.shape, bool))


def test_ct_masks_cover_the_body_not_the_air():
    """A windowed 'patient': a water disc (0.714) with a -160 HU ring (0.6), in air (0); soft tissue inside it only."""
    yy, xx = np.mgrid[0:128, 0:128]
    radius = np.hypot(yy - 64, xx - 64)
    windowed = np.where(radius < 40, 0.714, np.where(radius < 44, 0.6, 0.0))
    body, soft = pooling_mask(windowed), texture_mask(windowed)
    assert body[64, 64] and body[64, 64 + 46] and not body[0, 0]  # the outline is grown by 4 px
    assert soft[64, 64] and not soft[64, 64 + 41] and not soft[0, 0]
    assert soft.sum() < body.sum()
