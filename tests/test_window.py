"""Tests of scripts.ctio.window: the one HU -> [0, 1] mapping and its checks."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.ctio.window import (
    DEFAULT_HU_WINDOW,
    apply_hu_window,
    check_hu_window,
    hu_window_from_level_width,
    invert_hu_window,
)


def test_window_round_trip_inside_and_clipping_outside():
    low, high = DEFAULT_HU_WINDOW
    hu = np.linspace(-2000, 3000, 5001, dtype=np.float32)
    windowed = apply_hu_window(hu)
    assert windowed.dtype == np.float32 and windowed.min() == 0.0 and windowed.max() == 1.0
    back = invert_hu_window(windowed)
    inside = (hu >= low) & (hu <= high)
    np.testing.assert_allclose(back[inside], hu[inside], atol=1e-3)
    assert np.all(back[hu < low] == low) and np.all(back[hu > high] == high)


def test_window_is_linear_between_its_ends():
    np.testing.assert_allclose(apply_hu_window(np.array([-135.0, 40.0, 215.0]), (-135, 215)), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(apply_hu_window(np.array([-300.0]), DEFAULT_HU_WINDOW), [700 / 1400])


def test_level_width():
    assert hu_window_from_level_width(40, 350) == (-135.0, 215.0)
    # eeulig/ldct-benchmark: centre 1024 - 300 on HU + 1024, width 1400 -> the default window in HU.
    low, high = hu_window_from_level_width(1024 - 300, 1400)
    assert (low - 1024, high - 1024) == DEFAULT_HU_WINDOW
    with pytest.raises(ValueError, match="width must be positive"):
        hu_window_from_level_width(0, 0)


@pytest.mark.parametrize("bad", [(400, -1000), (0, 0), (1,), (1, 2, 3)])
def test_bad_windows_are_refused_everywhere(bad):
    with pytest.raises(ValueError, match="high > low"):
        check_hu_window(bad)
    with pytest.raises(ValueError, match="high > low"):
        apply_hu_window(np.zeros(2), bad)
    with pytest.raises(ValueError, match="high > low"):
        invert_hu_window(np.zeros(2), bad)
