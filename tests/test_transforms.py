"""Tests of scripts.data.transforms: the slice loader, HU windowing of streams, augmentation and crops."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.transforms import Compose
from PIL import Image
from pydicom.data import get_testdata_file

from scripts.ctio.dicom_pixels import read_dicom_hu
from scripts.ctio.window import apply_hu_window
from scripts.data import transforms as tr

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
    np.testing.assert_array_equal(image[0].numpy(), apply_hu_window(read_dicom_hu(path)))
    narrow = load(path, hu_window=(-135, 215))
    np.testing.assert_array_equal(narrow[0].numpy(), apply_hu_window(read_dicom_hu(path), (-135, 215)))


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


def numpy_shift(image: np.ndarray, shift) -> np.ndarray:
    """Reference whole-pixel shift: roll, then zero the rows/columns that wrapped around."""
    out = np.roll(image, shift, axis=(1, 2))
    for axis, step in zip((1, 2), shift):
        index = [slice(None)] * 3
        index[axis] = slice(0, step) if step >= 0 else slice(step, None)
        out[tuple(index)] = 0
    return out


def test_random_shift_reaches_both_limits_on_each_axis_and_matches_numpy():
    shifter = tr.RandIntegerShiftd("image", max_shift=2, prob=1.0)
    shifter.set_random_state(seed=0)
    image = sample()
    drawn = []
    for _ in range(200):
        out = shifter({"image": image})["image"]
        drawn.append(shifter.shift)
        np.testing.assert_array_equal(out.numpy(), numpy_shift(image.numpy(), shifter.shift))
    for axis in (0, 1):
        # Not luck of the seed: 200 draws from 5 values miss a given one with probability (4/5) ** 200 ~ 4e-20.
        assert {s[axis] for s in drawn} == {-2, -1, 0, 1, 2}


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


def test_body_crop_centres_fall_inside_the_body_at_native_scale():
    """A patient (0.7) in the lower right of air (0): each crop holds body; pixels are copied, never resampled."""
    image = np.zeros((1, 96, 96), np.float32)
    image[0, 60:90, 60:90] = 0.7 + 0.01 * np.arange(30)[None, :]
    pad, crop = tr.body_crop((32, 32))
    crop.set_random_state(0)
    values = set(np.unique(image).tolist())
    for _ in range(20):
        out = np.asarray(crop(pad({"image": torch.as_tensor(image)}))["image"])
        assert out.shape == (1, 32, 32) and (out > tr.BODY_LEVEL).mean() > 0.2
        assert set(np.unique(out).tolist()) <= values


def test_body_crop_without_body_still_crops_and_pads_small_slices():
    pad, crop = tr.body_crop((16, 16))
    crop.set_random_state(1)
    air = {"image": torch.zeros(1, 40, 40)}
    assert tuple(crop(pad(air))["image"].shape) == (1, 16, 16)
    small = {"image": torch.full((1, 10, 12), 0.7)}
    out = crop(pad(small))["image"]
    assert tuple(out.shape) == (1, 16, 16) and float(out.sum()) == pytest.approx(0.7 * 120, rel=1e-5)


def test_body_crop_is_reproducible_with_a_seed():
    image = {"image": torch.rand(1, 64, 64)}
    first, second = tr.RandBodyCropd("image", (20, 20)), tr.RandBodyCropd("image", (20, 20))
    first.set_random_state(5), second.set_random_state(5)
    for _ in range(5):
        assert torch.equal(first(image)["image"], second(image)["image"])
