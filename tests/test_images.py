"""Tests of scripts.ctio.images: 2-D image files read as one slice in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from scripts.ctio import images as ct

# --------------------------------------------------------------------------------------------------------------------
# 2-D image files


def test_ldctiqac_samples_read_as_unit_range(shared_ldctiqac_samples):
    files = sorted(shared_ldctiqac_samples.glob("*.tiff"))
    assert len(files) == 10
    for path in files:
        array = ct.read_image_file(path)
        raw = tifffile.imread(path)
        assert array.dtype == np.float32 and array.shape == (512, 512)
        assert 0.0 <= array.min() and array.max() <= 1.0
        np.testing.assert_array_equal(array, np.clip(raw, 0, 1))


def test_signed_integer_tiff_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "hu.tif", np.full((4, 4), -1000, np.int16))
    with pytest.raises(ValueError, match="raw CT values"):
        ct.read_image_file(tmp_path / "hu.tif")
