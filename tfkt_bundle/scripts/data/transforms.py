"""The slice loader and quality-preserving MONAI transforms.

Input size policy: perceived CT quality lives in the noise texture and streaks, which any resampling smooths away.
So nothing here interpolates:

- CT slices are used at full resolution (LDCTIQAC: 512 x 512), HU windowed to [0, 1] (:mod:`scripts.ctio.window`).
- CT training takes random crops at native scale centred inside the body (:func:`body_crop`), so that a crop
  shows the noise and streaks its slice's score was given for, not the air around the patient; evaluation and
  inference score whole slices.
- Natural IQA images (pre-training) are cropped, never resized, to a fixed size: a random crop for training and a
  centre crop for evaluation (:func:`fixed_size_crop`), padded first when an image is smaller than the crop.
- Augmentations only permute pixels: flips, 90-degree rotations and whole-pixel shifts
  (:func:`quality_preserving_augmentations`).

What MONAI already does and is used as is: flips (``RandFlipd``), 90-degree rotations (``RandRotate90d``), padding
and crops (``SpatialPadd``, ``RandSpatialCropd``, ``CenterSpatialCropd``) and the loading machinery (``LoadImaged``:
meta data, MetaTensor, channel first). What is written here and why:

- :class:`SliceReader` (used by :class:`LoadSliced`): MONAI's auto-selection hands ``.tif`` files to
  ``PydicomReader``, which fails; ``PILReader`` reads the LDCTIQAC float32 TIFFs correctly when named explicitly
  (with ``reverse_indexing=False``, else it transposes), but it neither scales 8/16-bit images by their bit depth
  nor turns RGB into one luminance channel, and it does not check that float slices are in [0, 1].
- :class:`HUWindowd`: windows the slices of a stream that are in HU and leaves those already in [0, 1] (image
  files) alone; ``ScaleIntensityRanged`` would window both, and a second copy of the window maths would drift.
- :class:`RandBodyCropd`: ``RandWeightedCropd`` draws centres the same way but returns a list of crops, which the
  bundle's plain collation does not take; ``RandSpatialCropd`` lands in air on a quarter of 512x512 CT crops.
- :class:`RandIntegerShiftd`: ``RandAffined`` translates by real-valued amounts on a centred float grid; even with
  nearest interpolation a half-pixel offset can duplicate or drop a row. Integer slicing moves pixels exactly.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

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
    SpatialCrop,
    SpatialPadd,
)
from monai.utils import MetaKeys, ensure_tuple

from scripts.ctio.dicom_pixels import read_dicom_hu
from scripts.ctio.images import read_image_file
from scripts.ctio.kinds import IMAGE_SUFFIXES, file_kind
from scripts.ctio.window import DEFAULT_HU_WINDOW, apply_hu_window, check_hu_window

# --------------------------------------------------------------------------------------------------------------------
# Loading one slice file


class SliceReader(ImageReader):
    """MONAI image reader for one 2-D slice file, giving float32 (H, W) in [0, 1].

    - TIFF: LDCTIQAC float32 slices kept as they are (must be in [0, 1] within 1e-3), 8/16-bit scaled by bit depth.
    - PNG/JPEG/BMP: 8/16-bit scaled by bit depth; colour converted to BT.601 luminance (the network is 1-channel).
    - DICOM (one single-frame file): HU from RescaleSlope/Intercept, then windowed with ``hu_window``. MONAI's
      ``PydicomReader`` would also rescale to HU, but this goes through :mod:`scripts.ctio.dicom_pixels` so that a
      single slice and a streamed series share one decode path (same decoder checks and errors).

    The array keeps the file's row/column order (no transpose), matching :mod:`scripts.ctio`.

    Args:
        hu_window: (low, high) HU window applied to DICOM slices.
    """

    def __init__(self, hu_window: Sequence[float] = DEFAULT_HU_WINDOW):
        super().__init__()
        self.hu_window = check_hu_window(hu_window)

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        """True if every name is an image file or looks like a DICOM file (``.dcm`` or no suffix)."""
        return all(file_kind(name) in ("image", "dicom") for name in ensure_tuple(filename))

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
        kind = file_kind(path)
        if kind == "dicom":
            return apply_hu_window(read_dicom_hu(path), self.hu_window), {"source_format": "dicom"}
        if kind == "image":
            return read_image_file(path), {"source_format": path.suffix.lower().lstrip(".")}
        raise ValueError(f"{path}: not a slice file (expected {', '.join(IMAGE_SUFFIXES)}, .dcm or no suffix)")


class LoadSliced(LoadImaged):
    """``LoadImaged`` with :class:`SliceReader`: a slice file -> (1, H, W) float32 MetaTensor in [0, 1].

    Args:
        keys: keys holding file paths.
        hu_window: (low, high) HU window for DICOM slices.
        image_only: return only the MetaTensor (meta data stays attached to it).
        allow_missing_keys: do not fail on absent keys.
        kwargs: passed on to ``LoadImaged``.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        image_only: bool = True,
        allow_missing_keys: bool = False,
        **kwargs,
    ):
        self.slice_reader = SliceReader(hu_window)
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


class HUWindowd(MapTransform):
    """Window the images of ``keys`` from HU to [0, 1] where ``d[hu_key]`` is true; leave the others as they are.

    For streamed slices (:class:`scripts.data.stream.SliceStream`): DICOM and NIfTI slices come in HU, 2-D image
    files already windowed. Arrays and tensors keep their type; a ``hu_key`` that is absent counts as HU.

    Args:
        keys: keys of the images.
        hu_window: (low, high) HU window.
        hu_key: item key saying whether the item's values are HU.
        allow_missing_keys: do not fail on absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        hu_key: str = "is_hu",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.hu_window = check_hu_window(hu_window)
        self.hu_key = hu_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if not d.get(self.hu_key, True):
            return d
        for key in self.key_iterator(d):
            windowed = apply_hu_window(np.asarray(d[key]), self.hu_window)
            d[key] = torch.from_numpy(windowed) if isinstance(d[key], torch.Tensor) else windowed
        d[self.hu_key] = False
        return d


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
    A config can list the same transforms itself, or call this with ``"$scripts.data.transforms...(...)"``.
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
        RandSpatialCropd(keys, roi_size=size, random_size=False) if train else CenterSpatialCropd(keys, roi_size=size)
    )
    return [SpatialPadd(keys, spatial_size=size, mode=pad_mode), crop]


# Body = denser than -500 HU in the default [-1000, 400] HU window (air outside the patient is 0 to 0.1).
BODY_LEVEL = 0.357


class RandBodyCropd(RandomizableTransform, MapTransform):
    """Crop ``roi_size`` around a centre drawn uniformly among the body pixels of the first key's image.

    A pixel is body when its value exceeds ``level`` (window units); with no body pixel the centre is drawn over the
    whole image. Crops stay inside the image (the centre is clamped); pad first when an image can be smaller.
    All keys get the same crop. Reproducible with ``set_random_state`` (or ``monai.utils.set_determinism``).
    """

    def __init__(
        self, keys: KeysCollection, roi_size: Sequence[int], level: float = BODY_LEVEL, allow_missing_keys: bool = False
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.roi_size = tuple(int(s) for s in roi_size)
        self.level = float(level)

    def _centre(self, image) -> list[int]:
        plane = np.asarray(image[0] if image.ndim == len(self.roi_size) + 1 else image)
        candidates = np.flatnonzero(plane > self.level)
        index = int(candidates[self.R.randint(len(candidates))]) if candidates.size else self.R.randint(plane.size)
        centre = np.unravel_index(index, plane.shape)
        half = [s // 2 for s in self.roi_size]
        return [int(min(max(c, h), n - (s - h))) for c, h, s, n in zip(centre, half, self.roi_size, plane.shape)]

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        first = self.first_key(d)
        if first == []:
            return d
        crop = SpatialCrop(roi_center=self._centre(d[first]), roi_size=self.roi_size)
        for key in self.key_iterator(d):
            d[key] = crop(d[key])
        return d


def body_crop(size: Sequence[int], keys: KeysCollection = ("image",), level: float = BODY_LEVEL) -> list:
    """Pad slices smaller than ``size``, then crop ``size`` at native scale around a random body pixel (training)."""
    size = [int(s) for s in size]
    return [SpatialPadd(keys, spatial_size=size, mode="constant"), RandBodyCropd(keys, roi_size=size, level=level)]
