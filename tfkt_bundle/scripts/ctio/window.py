"""The HU window: the one mapping from Hounsfield units to the network's [0, 1] input.

LDCTIQAC 2023 images are stored windowed to about [-1000, 400] HU (see docs/README.md, "Windowing"); the value
follows eeulig/ldct-benchmark's re-implementation (centre 1024 - 300 on HU + 1024, width 1400). Every workflow,
reader and tool takes its default from :data:`DEFAULT_HU_WINDOW`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_HU_WINDOW", "check_hu_window", "apply_hu_window", "invert_hu_window", "hu_window_from_level_width"]

DEFAULT_HU_WINDOW = (-1000.0, 400.0)


def check_hu_window(hu_window: Sequence[float]) -> tuple[float, float]:
    """Return ``hu_window`` as a (low, high) pair of floats; raise ValueError unless it has two values, high > low."""
    values = tuple(float(v) for v in hu_window)
    if len(values) != 2 or not values[1] > values[0]:
        raise ValueError(f"hu_window must be (low, high) in HU with high > low, got {tuple(hu_window)}")
    return values


def apply_hu_window(hu: np.ndarray, hu_window: Sequence[float] = DEFAULT_HU_WINDOW) -> np.ndarray:
    """Map Hounsfield units linearly from [low, high] to [0, 1], clipping outside, as float32."""
    low, high = check_hu_window(hu_window)
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def invert_hu_window(windowed: np.ndarray, hu_window: Sequence[float] = DEFAULT_HU_WINDOW) -> np.ndarray:
    """Invert :func:`apply_hu_window` (exact inside the window; clipped values come back as ``low`` or ``high``)."""
    low, high = check_hu_window(hu_window)
    return np.asarray(windowed, dtype=np.float32) * np.float32(high - low) + np.float32(low)


def hu_window_from_level_width(level: float, width: float) -> tuple[float, float]:
    """The (low, high) HU window of a display window given as level (centre) and width.

    Uses the plain linear definition [level - width/2, level + width/2] (as eeulig/ldct-benchmark and most viewers'
    presets), not the half-pixel-offset form of DICOM PS3.3 C.11.2.1.2.
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return float(level) - float(width) / 2, float(level) + float(width) / 2
