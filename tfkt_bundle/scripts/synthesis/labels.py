"""Full-reference label rules: the 0-4 score of a degraded image measured against its clean source.

Two rules, both on images in [0, 1] (CT windowed by :func:`scripts.ctio.window.apply_hu_window`):

- **SSIM rule** (the demo data's): ``4 * clip((SSIM - 0.15) / (0.95 - 0.15), 0, 1)``, SSIM of Wang et al. (2004)
  with an 11x11 Gaussian window (sigma 1.5). It saturates at the top: on real 512x512 CT a smooth-kernel (Hann)
  reconstruction at a quarter of the dose scores as high as the sharp full-dose scan, because SSIM forgives the
  loss of fine texture that its local means and variances barely see.
- **GMSD x texture rule** (the released weights' training sets):
  ``4 * clip((0.25 - GMSD) / (0.25 - 0.02), 0, 1) * clip(t, 0, 1)``.
  GMSD is the gradient magnitude similarity deviation of Xue et al. (2014, IEEE TIP 23(2):684-695): it compares the
  local gradient magnitude of the two images pixel by pixel, ``(2 g_r g_d + c) / (g_r^2 + g_d^2 + c)``, and pools by
  the standard deviation of that map, so added gradients (noise, streaks) and lost edges lower it alike (SROCC 0.96
  on LIVE and CSIQ in the paper). On CT it is pooled over the body (:func:`pooling_mask`), so the share of air around
  a patient does not move a slice's score. Its constant ``c`` hides gradients below about 70 HU per pixel in the
  [-1000, 400] HU window, so GMSD alone rewards denoisers that wipe out soft-tissue texture. ``t``, the *texture
  transfer*, is the regression slope of the image's fine texture (the image minus its Gaussian blur of 1.5 pixels)
  on the reference's, inside soft tissue (:func:`texture_mask`): noise is uncorrelated with the reference and
  leaves it near its value for the scan, while smoothing kernels and denoisers remove texture and lower it.
  The GMSD end points were set from the simulator's dose ladder on a pydicom-data abdomen slice (full dose about
  0.03, 2 % of full dose about 0.24), before any training. Limitation: against a smooth reference (a head scan
  reconstructed with a soft kernel) there is no texture to lose, and denoising is not penalised there.

``benchmarks/label_rules.py`` checks both rules on the demo's natural-image distortions (rank of the distortion
level within each type and picture) and on a CT dose / kernel / denoiser ladder.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from scripts.ctio.noise import body_mask

__all__ = [
    "SSIM_EXCELLENT",
    "SSIM_BAD",
    "GMSD_EXCELLENT",
    "GMSD_BAD",
    "reference_ssim",
    "ssim_to_score",
    "gmsd",
    "gmsd_to_score",
    "pooling_mask",
    "texture_mask",
    "ct_masks",
    "texture_transfer",
    "RULES",
    "full_reference_scores",
]

# SSIM at or above this is "excellent" (4), at or below SSIM_BAD "bad" (0); linear in between.
SSIM_EXCELLENT = 0.95
SSIM_BAD = 0.15
# GMSD at or below this is "excellent" (4), at or above GMSD_BAD "bad" (0); linear in between.
GMSD_EXCELLENT = 0.02
GMSD_BAD = 0.25
# Xue et al. use c = 170 on 0-255 images; the same constant for images in [0, 1].
_GMS_C = 170.0 / 255.0**2
_TEXTURE_SIGMA = 1.5
# -100 and 200 HU in the [0, 1] window of [-1000, 400] HU.
_SOFT_TISSUE = (900.0 / 1400.0, 1200.0 / 1400.0)
_PREWITT = np.array([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, -1.0]]) / 3.0


def reference_ssim(reference: np.ndarray, image: np.ndarray) -> float:
    """SSIM of an image against its clean reference, both in [0, 1], with the settings of Wang et al. (2004)."""
    return float(
        structural_similarity(
            reference, image, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def ssim_to_score(ssim: float) -> float:
    """Map SSIM onto the 0-4 scale: 4 at SSIM >= 0.95, 0 at SSIM <= 0.15, linear in between."""
    return float(4.0 * np.clip((ssim - SSIM_BAD) / (SSIM_EXCELLENT - SSIM_BAD), 0.0, 1.0))


def _gradient_magnitude(image: np.ndarray) -> np.ndarray:
    return np.hypot(
        ndimage.convolve(image, _PREWITT, mode="nearest"), ndimage.convolve(image, _PREWITT.T, mode="nearest")
    )


def gmsd(reference: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Gradient magnitude similarity deviation (Xue et al. 2014) of ``image`` against ``reference``, both in [0, 1].

    Unlike the paper, no 2x downsampling first: CT grain is one to three pixels wide and the rule must see it.

    Args:
        reference: clean image, 2-D.
        image: degraded image, same shape.
        mask: pixels to pool over (bool, same shape); None pools over the whole image.

    Returns:
        0 for identical images, larger for worse (about 0.35 at most in practice).
    """
    reference = np.asarray(reference, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    if reference.ndim != 2 or reference.shape != image.shape:
        raise ValueError(f"gmsd needs two 2-D images of one shape, got {reference.shape} and {image.shape}")
    g_ref, g_img = _gradient_magnitude(reference), _gradient_magnitude(image)
    similarity = (2.0 * g_ref * g_img + _GMS_C) / (g_ref**2 + g_img**2 + _GMS_C)
    if mask is not None:
        if mask.shape != reference.shape or not mask.any():
            raise ValueError("gmsd mask must have the images' shape and select at least one pixel")
        similarity = similarity[mask]
    return float(similarity.std())


def texture_transfer(reference: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Slope of ``image``'s fine texture regressed on ``reference``'s (both minus their 1.5-pixel Gaussian blur)
    inside ``mask`` (all pixels if None): about 1 when the reference's texture survives, towards 0 when smoothed."""
    ref_texture = _texture(np.asarray(reference, dtype=np.float64))
    img_texture = _texture(np.asarray(image, dtype=np.float64))
    if mask is not None:
        ref_texture, img_texture = ref_texture[mask], img_texture[mask]
    energy = float(np.dot(ref_texture.ravel(), ref_texture.ravel()))
    return float(np.dot(ref_texture.ravel(), img_texture.ravel()) / energy) if energy > 0 else 1.0


def _texture(image: np.ndarray) -> np.ndarray:
    return image - ndimage.gaussian_filter(image, _TEXTURE_SIGMA, mode="nearest")


def texture_mask(windowed: np.ndarray, body: np.ndarray | None = None) -> np.ndarray:
    """Soft tissue of a windowed CT slice (-100 to 200 HU in the [-1000, 400] window, eroded 2 pixels), inside the
    body (``body``, else :func:`pooling_mask`); the body when that holds fewer than 256 pixels."""
    windowed = np.asarray(windowed)
    body = pooling_mask(windowed) if body is None else body
    soft = ndimage.binary_erosion((windowed > _SOFT_TISSUE[0]) & (windowed < _SOFT_TISSUE[1]), iterations=2) & body
    return soft if soft.sum() >= 256 else body


def ct_masks(windowed_reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(body, soft tissue) of a windowed CT reference: where GMSD and the texture transfer pool. Compute once per
    reference and pass to :func:`full_reference_scores` for each of its degraded images."""
    body = pooling_mask(windowed_reference)
    return body, texture_mask(windowed_reference, body)


def gmsd_to_score(value: float) -> float:
    """Map GMSD onto the 0-4 scale: 4 at GMSD <= 0.02, 0 at GMSD >= 0.25, linear in between."""
    return float(4.0 * np.clip((GMSD_BAD - value) / (GMSD_BAD - GMSD_EXCELLENT), 0.0, 1.0))


def pooling_mask(windowed: np.ndarray, margin: int = 4) -> np.ndarray:
    """Where the GMSD rule pools on a windowed CT slice: the body (:func:`scripts.ctio.noise.body_mask`,
    not eroded) grown by ``margin`` pixels, so that its outline, where blur and streaks show first, counts too."""
    return ndimage.binary_dilation(body_mask(windowed, erosion=0), iterations=margin)


RULES = ("ssim", "gmsd_texture")


def full_reference_scores(
    reference: np.ndarray, image: np.ndarray, rule: str, masks: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, float]:
    """The measures of ``image`` against ``reference`` and the label by ``rule`` (``ssim`` or ``gmsd_texture``).

    ``masks``: for CT, :func:`ct_masks` of the reference (GMSD pooled over the body, the texture transfer over soft
    tissue); None pools both over the whole image. SSIM is always the demo's whole-image rule.

    Returns:
        ``{"ssim": ..., "gmsd": ..., "texture": ..., "score": ...}`` (unrounded).
    """
    if rule not in RULES:
        raise ValueError(f"unknown label rule {rule!r}; valid rules: {', '.join(RULES)}")
    body, soft = masks if masks is not None else (None, None)
    ssim, deviation = reference_ssim(reference, image), gmsd(reference, image, body)
    texture = texture_transfer(reference, image, soft)
    score = ssim_to_score(ssim) if rule == "ssim" else gmsd_to_score(deviation) * float(np.clip(texture, 0.0, 1.0))
    return {"ssim": ssim, "gmsd": deviation, "texture": texture, "score": score}
