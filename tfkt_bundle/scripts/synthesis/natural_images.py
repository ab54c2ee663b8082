"""Natural pictures that ship inside installed packages, and KADID-10k-like distortions of them (no download).

Pictures (:data:`PICTURES`): scikit-image's sample photographs (its synthetic ones, duplicates and the tiny ones
left out), matplotlib's sample photograph and scikit-learn's two (scikit-learn comes with MLflow). Each loads
as grayscale float in [0, 1].

Distortions (:data:`DISTORTIONS`): the grayscale-meaningful types of KADID-10k (Lin et al. 2019), five levels each,
mildest first: blurs (Gaussian, lens, motion), compression (JPEG, JPEG 2000), noise (white, impulse,
multiplicative, noise then denoise), brightness (brighten, darken), contrast, over-sharpening, spatial (jitter,
pixelation, gray blocks) and quantisation, plus bicubic down/up-sampling. :data:`DEMO_DISTORTIONS` are the six the
demo data uses. Every function takes a uint8 image, the level's value and a numpy Generator and returns uint8.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "PICTURES",
    "DEMO_PICTURES",
    "DISTORTIONS",
    "DEMO_DISTORTIONS",
    "load_picture",
    "picture_stem",
    "square_u8",
    "to_u8",
]

# scikit-image names, or "<package>:<file>" for the sample files of matplotlib and scikit-learn.
PICTURES = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
    "retina",
    "cell",
    "clock",
    "hubble_deep_field",
    "immunohistochemistry",
    "page",
    "text",
    "matplotlib:grace_hopper.jpg",
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
)
DEMO_PICTURES = PICTURES[:12]


def _rgb_to_gray(image: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray

    if image.ndim == 3:
        return rgb2gray(image[..., :3])
    return image.astype(np.float64) / (255.0 if image.dtype == np.uint8 else 1.0)


def load_picture(name: str) -> np.ndarray:
    """Load one of :data:`PICTURES` as grayscale float in [0, 1]."""
    package, _, file_name = name.rpartition(":")
    if package == "matplotlib":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(file_name) as handle:
            return _rgb_to_gray(np.asarray(Image.open(handle).convert("RGB")))
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        return _rgb_to_gray(load_sample_image(file_name))
    if package:
        raise ValueError(f"unknown picture source {package!r} in {name!r}")
    from skimage import data

    return _rgb_to_gray(data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)())


def picture_stem(name: str) -> str:
    """File-name stem of a picture: ``sklearn:china.jpg`` -> ``china``."""
    return name.rpartition(":")[2].rsplit(".", 1)[0].lower()


def to_u8(image: np.ndarray) -> np.ndarray:
    """Quantise an image in [0, 1] to uint8 (clipped)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def square_u8(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, resize to ``size`` with anti-aliasing, quantise to uint8."""
    from skimage.transform import resize

    rows, cols = image.shape
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    return to_u8(resize(image[top : top + side, left : left + side], (size, size), anti_aliasing=True))


def _unit(image: np.ndarray) -> np.ndarray:
    return image / 255.0


def _blur(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return to_u8(ndimage.gaussian_filter(_unit(image), sigma, mode="reflect"))


def _lens_blur(image: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    disk = (x**2 + y**2 <= radius**2).astype(np.float64)
    return to_u8(ndimage.convolve(_unit(image), disk / disk.sum(), mode="reflect"))


def _motion_blur(image: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    n = int(length)
    kernel = np.zeros((n, n))
    kernel[n // 2, :] = 1.0
    kernel = ndimage.rotate(kernel, rng.uniform(0.0, 180.0), reshape=False, order=1)
    return to_u8(ndimage.convolve(_unit(image), kernel / kernel.sum(), mode="reflect"))


def _noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    return to_u8(_unit(image) + rng.normal(0.0, std, image.shape))


def _multiplicative_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    scaled = _unit(image)
    return to_u8(scaled * (1.0 + rng.normal(0.0, std, image.shape)))


def _denoised_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """White noise, then a Gaussian denoiser matched to it: what KADID's 'denoise' type leaves (smeared grain)."""
    noisy = _unit(image) + rng.normal(0.0, std, image.shape)
    return to_u8(ndimage.gaussian_filter(noisy, 0.6 + 12.0 * std, mode="reflect"))


def _salt_pepper(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    out = image.copy()
    draw = rng.random(image.shape)
    out[draw < amount / 2] = 0
    out[(draw >= amount / 2) & (draw < amount)] = 255
    return out


def _encoded(image: np.ndarray, **save_args) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **save_args)
    return np.asarray(Image.open(buffer).convert("L"))


def _jpeg(image: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    return _encoded(image, format="JPEG", quality=int(quality))


def _jpeg2000(image: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    return _encoded(image, format="JPEG2000", quality_mode="rates", quality_layers=[float(ratio)])


def _contrast(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    scaled = _unit(image)
    return to_u8(scaled.mean() + factor * (scaled - scaled.mean()))


def _gamma(image: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """Brighten (gamma < 1) or darken (gamma > 1): a nonlinear tone change, as KADID's brighten/darken types."""
    return to_u8(_unit(image) ** gamma)


def _sharpen(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    scaled = _unit(image)
    return to_u8(scaled + amount * (scaled - ndimage.gaussian_filter(scaled, 1.0, mode="reflect")))


def _jitter(image: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Each pixel taken from a random neighbour up to ``shift`` pixels away."""
    rows, cols = np.indices(image.shape)
    dr = np.round(rng.uniform(-shift, shift, image.shape)).astype(int)
    dc = np.round(rng.uniform(-shift, shift, image.shape)).astype(int)
    return image[np.clip(rows + dr, 0, image.shape[0] - 1), np.clip(cols + dc, 0, image.shape[1] - 1)]


def _pixelate(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    small = max(2, round(size / factor))
    return np.asarray(Image.fromarray(image).resize((small, small), Image.BOX).resize((size, size), Image.NEAREST))


def _resample(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    small = max(2, round(size / factor))
    return np.asarray(Image.fromarray(image).resize((small, small), Image.BICUBIC).resize((size, size), Image.BICUBIC))


def _quantise(image: np.ndarray, levels: float, rng: np.random.Generator) -> np.ndarray:
    steps = int(levels) - 1
    return to_u8(np.round(_unit(image) * steps) / steps)


def _gray_blocks(image: np.ndarray, count: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` blocks of one random gray, each 1/16 of the side, at random places (KADID's colour blocks)."""
    out = image.copy()
    side = max(2, image.shape[0] // 16)
    for _ in range(int(count)):
        top, left = rng.integers(0, image.shape[0] - side), rng.integers(0, image.shape[1] - side)
        out[top : top + side, left : left + side] = rng.integers(0, 256)
    return out


Distortion = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
# name -> (function, values of levels 1..5 from mildest to strongest)
DISTORTIONS: dict[str, tuple[Distortion, tuple[float, ...]]] = {
    "blur": (_blur, (0.5, 1.0, 2.0, 3.0, 5.0)),  # Gaussian sigma, pixels
    "noise": (_noise, (0.02, 0.04, 0.08, 0.15, 0.25)),  # std on [0, 1]
    "jpeg": (_jpeg, (50, 25, 12, 6, 2)),  # Pillow quality
    "contrast": (_contrast, (0.75, 0.55, 0.4, 0.25, 0.12)),  # factor about the mean
    "saltpepper": (_salt_pepper, (0.005, 0.02, 0.05, 0.1, 0.2)),  # fraction of pixels hit
    "resample": (_resample, (1.5, 2.0, 3.0, 4.0, 6.0)),  # bicubic down- then up-sampling factor
    "lens_blur": (_lens_blur, (1.0, 2.0, 3.0, 5.0, 8.0)),  # disk radius, pixels
    "motion_blur": (_motion_blur, (3, 5, 9, 15, 25)),  # line length, pixels
    "jpeg2000": (_jpeg2000, (15, 30, 60, 120, 250)),  # compression ratio
    "multiplicative_noise": (_multiplicative_noise, (0.05, 0.1, 0.2, 0.3, 0.5)),  # relative std
    "denoised_noise": (_denoised_noise, (0.02, 0.04, 0.08, 0.12, 0.2)),  # std of the noise removed
    "brighten": (_gamma, (0.8, 0.65, 0.5, 0.38, 0.25)),  # gamma < 1
    "darken": (_gamma, (1.25, 1.6, 2.0, 2.7, 4.0)),  # gamma > 1
    "sharpen": (_sharpen, (1.0, 2.0, 4.0, 7.0, 12.0)),  # unsharp-mask amount (sigma 1)
    "jitter": (_jitter, (0.5, 1.0, 2.0, 3.0, 5.0)),  # largest displacement, pixels
    "pixelate": (_pixelate, (1.5, 2.0, 3.0, 5.0, 8.0)),  # block size, pixels
    "quantise": (_quantise, (48, 24, 12, 6, 3)),  # gray levels
    "gray_blocks": (_gray_blocks, (2, 4, 8, 16, 32)),  # block count
}
DEMO_DISTORTIONS = ("blur", "noise", "jpeg", "contrast", "saltpepper", "resample")
