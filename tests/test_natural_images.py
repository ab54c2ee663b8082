"""Tests of scripts.synthesis.natural_images: packaged pictures load offline, every distortion degrades by level."""

import numpy as np
import pytest

from scripts.synthesis.labels import full_reference_scores
from scripts.synthesis.natural_images import (
    DEMO_DISTORTIONS,
    DEMO_PICTURES,
    DISTORTIONS,
    PICTURES,
    load_picture,
    picture_stem,
    square_u8,
)


@pytest.mark.parametrize("name", PICTURES)
def test_every_picture_loads_offline_as_grayscale(name):
    image = load_picture(name)
    assert image.ndim == 2 and min(image.shape) >= 170
    assert 0.0 <= image.min() < image.max() <= 1.0


def test_stems_are_file_names_and_unique():
    stems = [picture_stem(name) for name in PICTURES]
    assert picture_stem("sklearn:china.jpg") == "china" and picture_stem("camera") == "camera"
    assert len(set(stems)) == len(stems) and all(stem.replace("_", "").isalnum() for stem in stems)
    assert set(DEMO_PICTURES) < set(PICTURES) and set(DEMO_DISTORTIONS) < set(DISTORTIONS)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return square_u8(load_picture("camera"), 96)


@pytest.mark.parametrize("distortion", sorted(DISTORTIONS))
def test_each_distortion_keeps_the_format_and_loses_quality_with_level(camera, distortion):
    func, values = DISTORTIONS[distortion]
    assert len(values) == 5
    scores = []
    for level, value in enumerate(values, start=1):
        out = func(camera, value, np.random.default_rng(level))
        assert out.dtype == np.uint8 and out.shape == camera.shape
        scores.append(full_reference_scores(camera / 255.0, out / 255.0, "gmsd_texture")["score"])
    assert scores[-1] < scores[0] <= 4.0, f"{distortion}: {np.round(scores, 2)}"
    assert scores[-1] < 3.0, f"{distortion}: the strongest level must lose clear quality, {np.round(scores, 2)}"
