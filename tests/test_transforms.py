"""Tests of scripts.transforms: windowing, the slice loader, quality-preserving augmentation and crops."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.transforms import Compose
from PIL import Image
from pydicom.data import get_testdata_file

from scripts import transforms as tr
from scripts.series import read_dicom_hu

# --------------------------------------------------------------------------------------------------------------------
# Windowing


def test_window_round_trip_inside_and_clipping_outside():
    low, high = tr.DEFAULT_WINDOW_HU
    hu = np.linspace(-2000, 3000, 5001, dtype=np.float32)
    windowed = tr.window_hu(hu)
    assert windowed.dtype == np.float32 and windowed.min() == 0.0 and windowed.max() == 1.0
    back = tr.window_to_hu(windowed)
    inside = (hu >= low) & (hu <= high)
    np.testing.assert_allclose(back[inside], hu[inside], atol=1e-3)
    assert np.all(back[hu < low] == low) and np.all(back[hu > high] == high)


def test_window_from_center_width():
    assert tr.window_from_center_width(40, 350) == (-135.0, 215.0)
    # eeulig/ldct-benchmark: centre 1024 - 300 on HU + 1024, width 1400 -> the default window in HU.
    low, high = tr.window_from_center_width(1024 - 300, 1400)
    assert (low - 1024, high - 1024) == tr.DEFAULT_WINDOW_HU
    with pytest.raises(ValueError, match="width must be positive"):
        tr.window_from_center_width(0, 0)


def test_monai_window_transform_equals_numpy_window():
    hu = np.random.default_rng(0).uniform(-1500, 1500, size=(1, 16, 16)).astype(np.float32)
    out = tr.window_transform("image")({"image": hu})["image"]
    np.testing.assert_allclose(np.asarray(out), tr.window_hu(hu), atol=1e-6)
    soft = tr.window_transform("image", window=(-135, 215))({"image": hu})["image"]
    np.testing.assert_allclose(np.asarray(soft), tr.window_hu(hu, -135, 215), atol=1e-6)
    with pytest.raises(ValueError):
        tr.window_transform("image", window=(400, -1000))


# --------------------------------------------------------------------------------------------------------------------
# Loader


def load(path, **kwargs):
    return tr.LoadSliced("image", **kwargs)({"image": str(path)})["image"]


def test_float_tiff_kept_exactly_with_channel_and_no_transpose(tmp_path):
    data = np.random.default_rng(1).random((5, 7), dtype=np.float32)
    tifffile.imwrite(tmp_path / "a.tif", data)
    image = load(tmp_path / "a.tif")
    assert image.dtype == torch.float32 and tuple(image.shape) == (1, 5, 7)
    np.testing.assert_array_equal(image[0].numpy(), data)
    assert image.meta["filename_or_obj"] == str(tmp_path / "a.tif")


def test_float_tiff_outside_unit_range_is_an_error(tmp_path):
    tifffile.imwrite(tmp_path / "bad.tiff", np.array([[0.0, 1.5]], np.float32))
    with pytest.raises(ValueError, match=r"float values span \[0, 1.5\]; expected an already-windowed slice"):
        load(tmp_path / "bad.tiff")
    tifffile.imwrite(tmp_path / "edge.tiff", np.array([[-0.0005, 1.0009]], np.float32))
    np.testing.assert_array_equal(load(tmp_path / "edge.tiff")[0].numpy(), [[0.0, 1.0]])  # within 1e-3: clipped


def test_rgb_png_becomes_bt601_luminance(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    image = load(tmp_path / "c.png")
    assert tuple(image.shape) == (1, 2, 2)
    expected = [[0.299, 0.587], [0.114, (0.299 * 10 + 0.587 * 20 + 0.114 * 30) / 255]]
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-6)


def test_gray_pngs_scaled_by_bit_depth(tmp_path):
    Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)).save(tmp_path / "g16.png")
    np.testing.assert_allclose(load(tmp_path / "g16.png")[0].numpy(), [[0.0, 32768 / 65535, 1.0]], atol=1e-7)
    Image.fromarray(np.array([[0, 128, 255]], np.uint8)).save(tmp_path / "g8.png")
    np.testing.assert_allclose(load(tmp_path / "g8.png")[0].numpy(), [[0.0, 128 / 255, 1.0]], atol=1e-7)


def test_dicom_slice_loaded_as_windowed_hu():
    path = get_testdata_file("CT_small.dcm")
    image = load(path)
    assert tuple(image.shape) == (1, 128, 128)
    np.testing.assert_array_equal(image[0].numpy(), tr.window_hu(read_dicom_hu(path)))
    narrow = load(path, window=(-135, 215))
    np.testing.assert_array_equal(narrow[0].numpy(), tr.window_hu(read_dicom_hu(path), -135, 215))


def test_reader_suffixes():
    reader = tr.SliceReader()
    assert reader.verify_suffix("a.tiff") and reader.verify_suffix("x.dcm") and reader.verify_suffix("CT.1.2.840")
    assert not reader.verify_suffix("v.nii.gz") and not reader.verify_suffix("notes.txt")


def test_ldctiqac_samples_through_the_loader(shared_ldctiqac_samples):
    for path in sorted(shared_ldctiqac_samples.glob("*.tiff")):
        image = load(path)
        assert tuple(image.shape) == (1, 512, 512) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0


# --------------------------------------------------------------------------------------------------------------------
# Augmentation


def sample(seed: int = 0, shape=(1, 12, 12)) -> torch.Tensor:
    # Distinct values, none equal to the fill value 0, so that any duplicated or invented pixel is visible.
    return torch.from_numpy(np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) + 1.0)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_flips_and_rot90_permute_pixels(index):
    transform = tr.quality_preserving_augmentations(prob=1.0)[index]
    image = sample()
    out = transform({"image": image})["image"]
    assert not torch.equal(out, image)
    assert torch.equal(torch.sort(out.flatten()).values, torch.sort(image.flatten()).values)


def test_integer_shift_copies_pixels_exactly_and_pads_with_fill():
    image = sample()
    out = tr.shift_pixels(image, (2, -3), fill=0.0)
    assert torch.equal(out[:, 2:, :9], image[:, :10, 3:])
    assert int((out == 0).sum()) == 12 * 12 - 10 * 9
    assert set(out[out != 0].tolist()) <= set(image.flatten().tolist())
    np.testing.assert_array_equal(tr.shift_pixels(image.numpy(), (2, -3)), out.numpy())
    assert torch.all(tr.shift_pixels(image, (20, 0)) == 0)


def test_random_shift_stays_within_max_and_keeps_values():
    shifter = tr.RandIntegerShiftd("image", max_shift=3, prob=1.0)
    shifter.set_random_state(seed=5)
    image = sample()
    for _ in range(20):
        out = shifter({"image": image})["image"]
        assert all(abs(s) <= 3 for s in shifter.shift)
        assert torch.equal(out, tr.shift_pixels(image, shifter.shift))


def pipeline(seed: int) -> Compose:
    compose = Compose(tr.quality_preserving_augmentations(prob=0.5, max_shift=4))
    compose.set_random_state(seed=seed)
    return compose


def test_augmentations_reproducible_with_a_seed():
    images = [sample(i) for i in range(8)]
    first = [pipeline(7)({"image": x})["image"] for x in images]
    again = [pipeline(7)({"image": x})["image"] for x in images]
    other = [pipeline(8)({"image": x})["image"] for x in images]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_augmentation_pipeline_adds_no_values_except_fill():
    compose = pipeline(3)
    image = sample()
    for _ in range(10):
        out = compose({"image": image})["image"]
        kept = out[out != 0]
        assert len(set(kept.tolist())) == kept.numel(), "a pixel was duplicated"
        assert set(kept.tolist()) <= set(image.flatten().tolist())


# --------------------------------------------------------------------------------------------------------------------
# Fixed-size crops


def test_crop_pads_small_and_crops_large_without_resampling():
    small = {"image": sample(0, (1, 5, 9))}
    train_pad, train_crop = tr.fixed_size_crop((8, 8), train=True)
    out = train_crop(train_pad(small))["image"]
    assert tuple(out.shape) == (1, 8, 8)
    assert set(out[out != 0].tolist()) <= set(small["image"].flatten().tolist())

    large = sample(1, (1, 20, 30))
    centre = Compose(tr.fixed_size_crop((8, 8), train=False))({"image": large})["image"]
    assert torch.equal(centre, large[:, 6:14, 11:19])

    crop = Compose(tr.fixed_size_crop((8, 8), train=True))
    crop.set_random_state(seed=0)
    patch = crop({"image": large})["image"]
    rows, cols = np.argwhere(large[0].numpy() == float(patch[0, 0, 0]))[0]
    assert torch.equal(patch, large[:, rows : rows + 8, cols : cols + 8])
