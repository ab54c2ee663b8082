"""A classical no-reference baseline: the robust noise level inside the body, as a score where higher = better.

Every learned model must beat it. It plays the part of the LDCTIQAC 2023 challenge's SNR baseline (2.4026 on the
real test set), which its organisers did not describe in detail, so this is our own, fixed, untuned version:

1.-3. **Body mask, high-pass residual, robust spread**: :mod:`scripts.ctio.noise` (Otsu body mask eroded
   3 px; Immerkaer's Laplacian-difference residual; 1.4826 x MAD / 6, clipped pixels left out).
4. **Score.** ``-ln(noise in HU)``, with the noise in HU = noise in window units x window width (1400 HU for the
   default [-1000, 400] window). The log because noise std scales as dose^(-1/2): equal dose ratios give equal
   score steps. The noise is floored at 0.01 HU so that a noiseless slice scores a finite 4.6.

What it cannot see: it measures noise, so it rewards any smoothing (a denoiser that erases detail scores as
"excellent") and it sees sparse-view streaks only through their high-frequency part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scripts.ctio.noise import noise_sigma
from scripts.ctio.window import DEFAULT_HU_WINDOW, check_hu_window

__all__ = ["NOISE_FLOOR_HU", "noise_hu", "noise_score"]

NOISE_FLOOR_HU = 0.01


def noise_hu(windowed: np.ndarray, hu_window: Sequence[float] = DEFAULT_HU_WINDOW) -> float:
    """Noise std in HU of a slice windowed to [0, 1] with ``hu_window`` (window units x window width)."""
    low, high = check_hu_window(hu_window)
    return noise_sigma(windowed) * (high - low)


def noise_score(windowed: np.ndarray, hu_window: Sequence[float] = DEFAULT_HU_WINDOW) -> float:
    """The baseline's quality score of a windowed slice: ``-ln(noise in HU)``, higher = less noise = better.

    Args:
        windowed: one slice windowed to [0, 1] (an LDCTIQAC image, or ``apply_hu_window`` of a HU slice).
        hu_window: the window the slice was made with, to express the noise in HU.

    Raises:
        ValueError: empty, non-2-D, NaN/inf or constant input, or no body found.
    """
    return -math.log(max(noise_hu(windowed, hu_window), NOISE_FLOOR_HU))
