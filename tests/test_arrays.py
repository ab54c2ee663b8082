"""scripts.ctio.arrays: the slice check shared by the noise estimate and the simulator."""

import numpy as np
import pytest

from scripts.ctio.arrays import checked_slice


def test_a_real_slice_comes_back_as_float64_unchanged():
    image = np.arange(64, dtype=np.int16).reshape(8, 8)
    out = checked_slice(image, "x", 8)
    assert out.dtype == np.float64 and out.shape == (8, 8)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((2, 8, 8)), r"x: need one 2-D slice, got shape \(2, 8, 8\)"),
        (np.zeros(8), "x: need one 2-D slice"),
        (np.zeros((8, 7)), r"x: the slice must be at least 8x8, got \(8, 7\)"),
        (np.full((8, 8), 1 + 1j), "x: pixel values must be real numbers"),
        (np.array([["a"] * 8] * 8), "x: pixel values must be real numbers"),
        (np.where(np.eye(8) > 0, np.nan, 0.0), r"x: the slice holds 8 NaN/inf pixel\(s\)"),
    ],
)
def test_anything_else_is_one_clear_error_naming_its_input(image, message):
    with pytest.raises(ValueError, match=message):
        checked_slice(image, "x", 8)
