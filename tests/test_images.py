"""Tests of scripts.ctio.images: 2-D image files read as one slice in [0, 1]."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("shape, axes", [((3, 32, 32), "QYX"), ((2, 3, 8, 8), "QQYX")], ids=["stack", "volume"])
def test_tiff_stack_or_volume_is_refused_in_one_line(tmp_path, shape, axes):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros(shape, np.float32), photometric="minisblack")  # pages
    expected = re.escape(f"got a TIFF of shape {shape} (axes {axes}: a stack or volume")
    with pytest.raises(ValueError, match=expected) as error:
        ct.read_image_file(tmp_path / "stack.tif")
    assert "\n" not in str(error.value)


def test_colour_tiff_in_planes_reads_like_interleaved_colour(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    rgb = np.dstack([gray, np.flipud(gray), gray.T])
    tifffile.imwrite(tmp_path / "planes.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "interleaved.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(
        ct.read_image_file(tmp_path / "planes.tif"), ct.read_image_file(tmp_path / "interleaved.tif")
    )
    with pytest.raises(ValueError, match="colour image"):
        ct.read_image_file(tmp_path / "planes.tif", grayscale_only=True)
    tifffile.imwrite(tmp_path / "gray_planes.tif", np.stack([gray] * 3), photometric="rgb", planarconfig="separate")
    np.testing.assert_allclose(ct.read_image_file(tmp_path / "gray_planes.tif", grayscale_only=True), gray / 255, 1e-6)


def test_several_images_in_one_tiff_and_a_damaged_tiff_are_refused_by_name(tmp_path):
    with tifffile.TiffWriter(tmp_path / "two.tif") as writer:  # two sizes: two images, imread would give the first
        writer.write(np.zeros((8, 8), np.uint8))
        writer.write(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="two.tif: 2 images in one TIFF; expected a single 2-D slice"):
        ct.read_image_file(tmp_path / "two.tif")
    tifffile.imwrite(tmp_path / "cut.tif", np.zeros((32, 32), np.float32))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "cut.tif").read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.tif: damaged TIFF"):
        ct.read_image_file(tmp_path / "cut.tif")
