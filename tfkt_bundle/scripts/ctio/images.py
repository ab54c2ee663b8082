"""2-D image files (LDCTIQAC float TIFF, PNG, JPEG, BMP) read as one already-windowed slice in [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .kinds import IMAGE_SUFFIXES, PIL_SUFFIXES, TIFF_SUFFIXES

__all__ = ["read_image_file", "UNIT_RANGE_TOLERANCE"]

UNIT_RANGE_TOLERANCE = 1e-3
# ITU-R BT.601 luma weights: the same as Pillow's convert("L") and OpenCV, computed in float without 8-bit rounding.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def read_image_file(path: str | os.PathLike, grayscale_only: bool = False) -> np.ndarray:
    """Read a 2-D image file as float32 (H, W) in [0, 1].

    - TIFF (tifffile): float data is kept as is and must lie in [0, 1] within 1e-3 (LDCTIQAC slices); 8/16-bit
      unsigned integers are divided by 255/65535. Signed integers are refused: they are raw CT values, whose
      window is unknown (give such data as DICOM or NIfTI).
    - PNG/JPEG/BMP (Pillow): 8-bit / 16-bit gray divided by 255 / 65535; colour images become BT.601 luminance.

    Args:
        path: the image file.
        grayscale_only: refuse colour images whose channels differ (a CT slice is grayscale; natural-image sets
            are not). Colour files with equal channels are gray and accepted.

    Raises:
        ValueError: not a single 2-D image (a TIFF stack or volume, several images in one file), colour where
            ``grayscale_only``, or values outside the expected range.
        OSError: the file cannot be read (e.g. PermissionError) or Pillow does not recognise it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _to_unit_gray(_read_tiff(path, grayscale_only), path)
    if suffix in PIL_SUFFIXES:
        return _read_pil(path, grayscale_only)
    raise ValueError(f"{path}: unsupported image type {suffix!r} (expected one of {', '.join(IMAGE_SUFFIXES)})")


def _read_tiff(path: Path, grayscale_only: bool) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            series = list(tiff.series)
            array, axes = (series[0].asarray(), series[0].axes) if len(series) == 1 else (None, "")
    except ValueError as err:  # tifffile's errors on a damaged file (TiffFileError is one) do not name it
        raise ValueError(f"{path}: damaged TIFF ({err})") from None
    if not series:
        raise ValueError(f"{path}: damaged TIFF (no image found)")
    if array is None:  # imread would return the first image and pass over the others
        raise ValueError(f"{path}: {len(series)} images in one TIFF; expected a single 2-D slice")
    if "S" in axes:  # colour samples last, whether stored interleaved (YXS) or in planes (SYX)
        array, axes = np.moveaxis(array, axes.index("S"), -1), axes.replace("S", "") + "S"
    keep = [k for k, axis in enumerate(axes) if axis in "YX" or array.shape[k] != 1]  # (1, H, W) pages and the like
    array, axes = array.reshape([array.shape[k] for k in keep]), "".join(axes[k] for k in keep)
    if axes == "YXS" and array.shape[-1] in (3, 4):
        return _luminance(_checked_colour(array[..., :3], path, grayscale_only), path)
    if axes != "YX":
        raise ValueError(
            f"{path}: expected a single 2-D slice, got a TIFF of shape {array.shape} (axes {axes}: a stack or "
            "volume; give one slice per file, or the volume as NIfTI)"
        )
    return array


def _read_pil(path: Path, grayscale_only: bool) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        frames = getattr(image, "n_frames", 1)
        if frames > 1:  # an animated PNG: reading would give its first frame only
            raise ValueError(f"{path}: {frames} frames in one image file; expected a single 2-D slice")
        mode = image.mode
        if mode.startswith("I;16") or mode == "I":  # 16-bit PNG (Pillow may widen it to 32-bit "I")
            return _to_unit_gray(np.asarray(image).astype(np.int64), path, max_value=65535)
        if mode == "F":
            return _to_unit_gray(np.asarray(image, dtype=np.float32), path)
        if mode in ("L", "LA", "1"):
            return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255)
        rgb = np.asarray(image.convert("RGB"))
    return _luminance(_checked_colour(rgb, path, grayscale_only), path)


def _checked_colour(rgb: np.ndarray, path: Path, grayscale_only: bool) -> np.ndarray:
    if grayscale_only and not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        raise ValueError(f"{path}: colour image ({rgb.shape[-1]} differing channels); a CT slice is grayscale")
    return rgb


def _luminance(rgb: np.ndarray, path: Path) -> np.ndarray:
    unit = _to_unit_gray(rgb, path)
    return np.tensordot(unit, LUMA_WEIGHTS, axes=([-1], [0])).astype(np.float32)


def _to_unit_gray(array: np.ndarray, path: Path, max_value: int | None = None) -> np.ndarray:
    """Scale integers by their bit depth, check floats are already in [0, 1]; return float32."""
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return _checked_unit_float(array.astype(np.float32), path)
    if max_value is None and array.dtype in (np.uint8, np.uint16):
        max_value = int(np.iinfo(array.dtype).max)
    if max_value is None:
        raise ValueError(
            f"{path}: {array.dtype} pixels have no fixed [0, 1] scaling (raw CT values?); "
            "give HU data as DICOM or NIfTI, or windowed data as float in [0, 1] or 8/16-bit unsigned"
        )
    if array.size and (int(array.min()) < 0 or int(array.max()) > max_value):
        raise ValueError(f"{path}: pixel values [{int(array.min())}, {int(array.max())}] fall outside [0, {max_value}]")
    return array.astype(np.float32) / np.float32(max_value)


def _checked_unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -UNIT_RANGE_TOLERANCE or high > 1 + UNIT_RANGE_TOLERANCE:
        raise ValueError(
            f"{path}: float values span [{low:.4g}, {high:.4g}]; expected an already-windowed slice in [0, 1] "
            f"(tolerance {UNIT_RANGE_TOLERANCE})"
        )
    return np.clip(array, 0.0, 1.0, out=array)
