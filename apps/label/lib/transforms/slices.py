"""Read every CT slice of a request's image through the bundle's slice stream."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from lib.bundle import Bundle

__all__ = ["SLICE_FIELDS", "ReadSlicesd"]

# Identifiers of a slice that go back to the viewer with its score (the bundle's per-slice CSV has them all).
SLICE_FIELDS = ("name", "slice_index", "instance_number", "z", "sop_instance_uid", "series_instance_uid")


class ReadSlicesd(MapTransform):
    """``d[key]``: a path (2-D image file, NIfTI volume, DICOM file or series folder) -> list of (1, H, W) tensors.

    The slices are read, HU-windowed and shaped by the bundle's inference ``dataset`` and ``preprocessing``, so the
    network sees what the bundle's workflow gives it. ``d[slices_key]`` receives each slice's identifiers.

    Args:
        bundle: the parsed bundle.
        keys: keys holding the path.
        slices_key: key that receives the list of identifier dicts.
    """

    def __init__(self, bundle: Bundle, keys: KeysCollection = "image", slices_key: str = "slices") -> None:
        super().__init__(keys)
        self.bundle = bundle
        self.slices_key = slices_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            images, slices = [], []
            for item in self.bundle.slices(d[key]):
                images.append(torch.as_tensor(item["image"], dtype=torch.float32))
                slices.append(_identifiers(item))
            if not images:
                raise ValueError(f"{d[key]}: no CT slice to score")
            d[key], d[self.slices_key] = images, slices
        return d


def _identifiers(item: Mapping) -> dict:
    """The :data:`SLICE_FIELDS` that the slice has: JSON has no NaN, and empty ones would only be noise."""
    out = {}
    for field in SLICE_FIELDS:
        value = item.get(field)
        if isinstance(value, float) and math.isfinite(value):
            out[field] = int(value) if value.is_integer() and field != "z" else value
        elif isinstance(value, str) and value:
            out[field] = value
    return out
