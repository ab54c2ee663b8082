"""Robust noise of one CT slice, measured inside the patient's body: the body mask and the noise estimate.

Used by the no-reference noise baseline (:mod:`scripts.evaluation.noise_baseline`), by the full-reference label
rule (its pooling mask) and by the training-set builder (denoiser strengths set from a scan's own noise).

1. **Body mask.** Otsu threshold of the Gaussian-smoothed slice (sigma 2 px), largest connected region (the
   patient, not the table), holes filled (bowel gas, lungs), eroded by 3 px so that no filter window straddles the
   skin. Otsu, connected components and erosion are unchanged by a constant offset of the image.
2. **High-pass residual.** The 3x3 Laplacian-difference kernel of Immerkaer ("Fast noise variance estimation",
   CVIU 64(2), 1996): it removes constants and linear ramps, and white noise of std sigma gives a response of std
   ``6 * sigma`` (the kernel's L2 norm).
3. **Robust spread.** ``1.4826 * MAD`` of the residual over the mask, divided by 6: the noise std in image units.
   The median ignores the minority of pixels on organ edges. Pixels whose 3x3 neighbourhood holds the image's
   minimum or maximum value (clipped by the display window: air at 0, dense bone at 1) carry no measurable noise
   and are left out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from .arrays import checked_slice

__all__ = ["LAPLACIAN_KERNEL", "MIN_BODY_PIXELS", "body_mask", "noise_sigma"]

# Immerkaer's kernel: second differences along both axes minus the diagonal ones; sum 0, L2 norm 6.
LAPLACIAN_KERNEL = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_KERNEL_NORM = float(np.sqrt(np.sum(LAPLACIAN_KERNEL**2)))
_MAD_TO_STD = 1.4826  # MAD of a Gaussian times this is its std
_MASK_SMOOTHING = 2.0
_MASK_EROSION = 3
MIN_BODY_PIXELS = 256
_MIN_SIDE = 16


def _check_image(image: np.ndarray) -> np.ndarray:
    """The slice as float64 (H, W); a clear ValueError for anything that is not a finite, non-trivial 2-D image."""
    arr = np.asarray(image)
    if arr.size == 0:
        raise ValueError("noise: the image is empty")
    # (1, H, W) and (1, 1, H, W) as the networks take them are fine
    return checked_slice(np.squeeze(arr), "noise", _MIN_SIDE)


def body_mask(image: np.ndarray, erosion: int = _MASK_EROSION) -> np.ndarray:
    """The patient's body (largest bright region, holes filled, eroded ``erosion`` px, 3 by default: the noise is
    measured clear of the skin edge) as a boolean (H, W) mask.

    Raises:
        ValueError: the image is constant, or the body holds fewer than 256 pixels after erosion.
    """
    arr = _check_image(image)
    smooth = ndimage.gaussian_filter(arr, _MASK_SMOOTHING)
    if np.ptp(smooth) == 0:
        raise ValueError("noise: the image is constant, no body to measure in")
    labels, count = ndimage.label(smooth > threshold_otsu(smooth))
    mask = np.zeros(arr.shape, dtype=bool)
    if count:
        largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
        mask = ndimage.binary_fill_holes(labels == largest)
        mask = ndimage.binary_erosion(mask, iterations=erosion) if erosion > 0 else mask
    if mask.sum() < MIN_BODY_PIXELS:
        raise ValueError(f"noise: the body mask holds {int(mask.sum())} pixels, fewer than {MIN_BODY_PIXELS}")
    return mask


def _saturated(arr: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds the image's minimum or maximum: values the display window clipped."""
    extreme = (arr == arr.min()) | (arr == arr.max())
    return ndimage.binary_dilation(extreme, structure=np.ones((3, 3), dtype=bool))


def noise_sigma(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust noise std of a slice in its own units (MAD of the Laplacian residual inside ``mask``).

    Args:
        image: one slice, e.g. windowed to [0, 1].
        mask: where to measure; :func:`body_mask` of the image if None.

    Returns:
        The noise std; 0.0 when every masked pixel touches a clipped value (nothing left to measure in).
    """
    arr = _check_image(image)
    mask = body_mask(arr) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != arr.shape:
        raise ValueError(f"noise: mask shape {mask.shape} differs from image shape {arr.shape}")
    residual = ndimage.convolve(arr, LAPLACIAN_KERNEL, mode="reflect")[mask & ~_saturated(arr)]
    if residual.size == 0:
        return 0.0
    mad = float(np.median(np.abs(residual - np.median(residual))))
    return _MAD_TO_STD * mad / _KERNEL_NORM
