"""The one check of an in-memory slice that every pixel-level computation (noise estimate, simulator) starts from."""

from __future__ import annotations

import numpy as np


def checked_slice(array: np.ndarray, what: str, min_side: int) -> np.ndarray:
    """``array`` as a float64 (H, W) slice; a ValueError that names ``what`` for anything that is not a real-valued,
    finite 2-D slice at least ``min_side`` pixels a side."""
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise ValueError(f"{what}: need one 2-D slice, got shape {arr.shape}")
    if min(arr.shape) < min_side:
        raise ValueError(f"{what}: the slice must be at least {min_side}x{min_side}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{what}: pixel values must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ValueError(f"{what}: the slice holds {bad} NaN/inf pixel(s)")
    return arr
