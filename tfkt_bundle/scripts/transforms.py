"""CT intensity windowing, the slice loader and quality-preserving MONAI transforms.

Input size policy: perceived CT quality lives in the noise texture and streaks, which any resampling smooths away.
So nothing here interpolates:

- CT slices are used at full resolution (LDCTIQAC: 512 x 512), windowed from HU to [0, 1].
- Natural IQA images (pre-training) are cropped, never resized, to a fixed size: a random crop for training and a
  centre crop for evaluation (:func:`fixed_size_crop`), padded first when an image is smaller than the crop.
- Augmentations only permute pixels: flips, 90-degree rotations and whole-pixel shifts
  (:func:`quality_preserving_augmentations`).

What MONAI already does and is used as is: HU windowing (``ScaleIntensityRanged``, built by
:func:`window_transform` so the default window lives in one place), flips (``RandFlipd``), 90-degree rotations
(``RandRotate90d``), padding and crops (``SpatialPadd``, ``RandSpatialCropd``, ``CenterSpatialCropd``) and the
loading machinery (``LoadImaged``: meta data, MetaTensor, channel first).
What is written here and why:

- :class:`SliceReader` (used by :class:`LoadSliced`): MONAI's auto-selection hands ``.tif`` files to
  ``PydicomReader``, which fails; ``PILReader`` reads the LDCTIQAC float32 TIFFs correctly when named explicitly
  (with ``reverse_indexing=False``, else it transposes), but it neither scales 8/16-bit images by their bit depth
  nor turns RGB into one luminance channel, and it does not check that float slices are in [0, 1].
- :class:`RandIntegerShiftd`: ``RandAffined`` translates by real-valued amounts on a centred float grid; even with
  nearest interpolation a half-pixel offset can duplicate or drop a row. Integer slicing moves pixels exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.image_reader import ImageReader
from monai.transforms import (
    CenterSpatialCropd,
    LoadImaged,
    MapTransform,
    RandFlipd,
    RandomizableTransform,
    RandRotate90d,
    RandSpatialCropd,
    ScaleIntensityRanged,
    SpatialPadd,
)
from monai.utils import MetaKeys, ensure_tuple

from .series import IMAGE_SUFFIXES, read_dicom_hu, read_image_file

# LDCTIQAC 2023 images are stored windowed to about [-1000, 400] HU (see docs/README.md, "Windowing"); the value
# follows eeulig/ldct-benchmark's re-implementation (centre 1024 - 300 on HU + 1024, width 1400).
DEFAULT_WINDOW_HU = (-1000.0, 400.0)
DICOM_SUFFIXES = ("", ".dcm", ".dicom", ".ima")


def window_hu(hu: np.ndarray, low: float = DEFAULT_WINDOW_HU[0], high: float = DEFAULT_WINDOW_HU[1]) -> np.ndarray:
    """Map Hounsfield units linearly from [low, high] to [0, 1], clipping outside, as float32."""
    if high <= low:
        raise ValueError(f"window high ({high}) must exceed low ({low})")
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def window_to_hu(
    windowed: np.ndarray, low: float = DEFAULT_WINDOW_HU[0], high: float = DEFAULT_WINDOW_HU[1]
) -> np.ndarray:
    """Invert :func:`window_hu` (exact inside the window; clipped values come back as ``low`` or ``high``)."""
    if high <= low:
        raise ValueError(f"window high ({high}) must exceed low ({low})")
    return np.asarray(windowed, dtype=np.float32) * np.float32(high - low) + np.float32(low)


def window_from_center_width(center: float, width: float) -> tuple[float, float]:
    """Return the (low, high) HU bounds of a display window given as level (centre) and width.

    Uses the plain linear definition [center - width/2, center + width/2] (as eeulig/ldct-benchmark and most
    viewers' presets), not the half-pixel-offset form of DICOM PS3.3 C.11.2.1.2.
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return float(center) - float(width) / 2, float(center) + float(width) / 2


def window_transform(
    keys: KeysCollection = ("image",),
    window: Sequence[float] = DEFAULT_WINDOW_HU,
    allow_missing_keys: bool = False,
) -> ScaleIntensityRanged:
    """MONAI's ``ScaleIntensityRanged`` mapping the HU ``window`` (low, high) to [0, 1] with clipping.

    Usable from configs as ``{"_target_": "scripts.transforms.window_transform", "keys": "image"}``.
    """
    low, high = (float(v) for v in window)
    if high <= low:
        raise ValueError(f"window high ({high}) must exceed low ({low})")
    return ScaleIntensityRanged(
        keys, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True, allow_missing_keys=allow_missing_keys
    )


# --------------------------------------------------------------------------------------------------------------------
# Loading one slice file


class SliceReader(ImageReader):
    """MONAI image reader for one 2-D slice file, giving float32 (H, W) in [0, 1].

    - TIFF: LDCTIQAC float32 slices kept as they are (must be in [0, 1] within 1e-3), 8/16-bit scaled by bit depth.
    - PNG/JPEG/BMP: 8/16-bit scaled by bit depth; colour converted to BT.601 luminance (the network is 1-channel).
    - DICOM (one single-frame file): HU from RescaleSlope/Intercept, then windowed with ``window``. MONAI's
      ``PydicomReader`` would also rescale to HU, but this goes through :mod:`scripts.series` so that a single
      slice and a streamed series share one decode path (same decoder checks and errors).

    The array keeps the file's row/column order (no transpose), matching :mod:`scripts.series`.

    Args:
        window: (low, high) HU window applied to DICOM slices.
    """

    def __init__(self, window: Sequence[float] = DEFAULT_WINDOW_HU):
        super().__init__()
        self.window = tuple(float(v) for v in window)
        if len(self.window) != 2 or self.window[1] <= self.window[0]:
            raise ValueError(f"window must be (low, high) with high > low, got {window}")

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        """True if every name is an image file or looks like a DICOM file (``.dcm`` or no suffix)."""
        return all(_slice_kind(Path(name)) is not None for name in ensure_tuple(filename))

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs) -> list | tuple:
        """Read one file, or several (stacked as channels by :meth:`get_data`)."""
        names = ensure_tuple(data)
        loaded = [self._read_one(Path(name)) for name in names]
        return loaded if len(names) > 1 else loaded[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """Return the array (H, W), or (N, H, W) for N files, and its meta data."""
        items = img if isinstance(img, list) else [img]
        arrays = [array for array, _ in items]
        meta = dict(items[0][1])
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(arrays[0].shape)
        if len(arrays) == 1:
            meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan")
            return arrays[0], meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays), meta

    def _read_one(self, path: Path) -> tuple[np.ndarray, dict]:
        kind = _slice_kind(path)
        if kind == "dicom":
            return window_hu(read_dicom_hu(path), *self.window), {"source_format": "dicom"}
        if kind == "image":
            return read_image_file(path), {"source_format": path.suffix.lower().lstrip(".")}
        raise ValueError(f"{path}: not a slice file (expected {', '.join(IMAGE_SUFFIXES)}, .dcm or no suffix)")


def _slice_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    # DICOM files are often named by UID ("CT.1.3.12...") or have no suffix: a purely numeric suffix counts as none.
    if suffix in DICOM_SUFFIXES or suffix.lstrip(".").isdigit():
        return "dicom"
    return None


class LoadSliced(LoadImaged):
    """``LoadImaged`` with :class:`SliceReader`: a slice file -> (1, H, W) float32 MetaTensor in [0, 1].

    Args:
        keys: keys holding file paths.
        window: (low, high) HU window for DICOM slices.
        image_only: return only the MetaTensor (meta data stays attached to it).
        allow_missing_keys: do not fail on absent keys.
        kwargs: passed on to ``LoadImaged``.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        window: Sequence[float] = DEFAULT_WINDOW_HU,
        image_only: bool = True,
        allow_missing_keys: bool = False,
        **kwargs,
    ):
        self.slice_reader = SliceReader(window)
        super().__init__(
            keys,
            reader=self.slice_reader,
            image_only=image_only,
            ensure_channel_first=True,
            allow_missing_keys=allow_missing_keys,
            **kwargs,
        )

    def __call__(self, data: Mapping[Hashable, object], reader: ImageReader | None = None) -> dict:
        # A reader given to LoadImaged's constructor is tried first and, if it raises, MONAI silently falls back
        # to its default readers (a float TIFF out of range would then load unchecked through PILReader).
        # A reader given at call time is used alone, so the reader's own errors reach the user.
        return super().__call__(data, reader or self.slice_reader)


# --------------------------------------------------------------------------------------------------------------------
# Quality-preserving augmentation and fixed-size crops


def shift_pixels(image, shift: Sequence[int], fill: float = 0.0):
    """Shift a channel-first array/tensor by whole pixels per spatial axis; vacated pixels get ``fill``.

    Kept pixels are copied exactly, so no new values appear except ``fill``.
    """
    spatial = image.shape[1:]
    if len(shift) != len(spatial):
        raise ValueError(f"shift has {len(shift)} values for {len(spatial)} spatial axes")
    out = image.clone() if isinstance(image, torch.Tensor) else np.array(image, copy=True)
    out[...] = fill
    src, dst = [slice(None)], [slice(None)]
    for step, size in zip(shift, spatial):
        step = max(-size, min(size, int(step)))
        src.append(slice(0, size - step) if step >= 0 else slice(-step, size))
        dst.append(slice(step, size) if step >= 0 else slice(0, size + step))
    out[tuple(dst)] = image[tuple(src)]
    return out


class RandIntegerShiftd(RandomizableTransform, MapTransform):
    """With probability ``prob``, shift the images of ``keys`` by a random whole number of pixels per axis.

    All keys get the same shift. Reproducible with ``set_random_state`` (or ``monai.utils.set_determinism``).

    Args:
        keys: keys of channel-first images.
        max_shift: largest shift in pixels, one value for all spatial axes or one per axis.
        prob: probability of shifting.
        fill: value of the vacated border (0 is air after CT windowing, black for natural images).
        allow_missing_keys: do not fail on absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        max_shift: int | Sequence[int] = 8,
        prob: float = 0.5,
        fill: float = 0.0,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.max_shift = tuple(int(m) for m in ensure_tuple(max_shift))
        if any(m < 0 for m in self.max_shift):
            raise ValueError(f"max_shift must be non-negative, got {max_shift}")
        self.fill = fill
        self.shift: tuple[int, ...] = ()

    def randomize(self, spatial_dims: int) -> None:
        """Draw whether to shift and by how much (both always drawn, so the random stream does not depend on it)."""
        super().randomize(None)
        limits = self.max_shift * spatial_dims if len(self.max_shift) == 1 else self.max_shift
        if len(limits) != spatial_dims:
            raise ValueError(f"max_shift has {len(limits)} values for {spatial_dims} spatial axes")
        self.shift = tuple(int(self.R.randint(-m, m + 1)) for m in limits)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        first = self.first_key(d)
        if first == []:
            return d
        self.randomize(len(d[first].shape) - 1)
        if self._do_transform:
            for key in self.key_iterator(d):
                d[key] = shift_pixels(d[key], self.shift, self.fill)
        return d


def quality_preserving_augmentations(
    keys: KeysCollection = ("image",), prob: float = 0.5, max_shift: int = 8, fill: float = 0.0
) -> list:
    """Random flips (both axes), 90-degree rotations and whole-pixel shifts: none changes perceived quality.

    Put them after any fixed-size crop: a 90-degree rotation swaps H and W of a non-square image.
    A config can list the same transforms itself, or call this with ``"$scripts.transforms...(...)"``.
    """
    return [
        RandFlipd(keys, prob=prob, spatial_axis=0),
        RandFlipd(keys, prob=prob, spatial_axis=1),
        RandRotate90d(keys, prob=prob, max_k=3, spatial_axes=(0, 1)),
        RandIntegerShiftd(keys, max_shift=max_shift, prob=prob, fill=fill),
    ]


def fixed_size_crop(
    size: Sequence[int], keys: KeysCollection = ("image",), train: bool = True, pad_mode: str = "constant"
) -> list:
    """Pad images smaller than ``size``, then crop to ``size``: random position for training, centre for evaluation.

    For natural images of varying size (the network needs one size per batch); resizing would smooth the
    distortions whose quality is being scored. ``pad_mode`` is a ``SpatialPadd`` mode ("constant" pads with 0).
    """
    size = [int(s) for s in size]
    crop = (
        RandSpatialCropd(keys, roi_size=size, random_size=False)
        if train
        else CenterSpatialCropd(keys, roi_size=size)
    )
    return [SpatialPadd(keys, spatial_size=size, mode=pad_mode), crop]
