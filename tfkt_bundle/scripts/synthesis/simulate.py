"""Physics-based low-dose CT simulation from a full-dose slice in Hounsfield units (HU).

The standard pre-log model (Zeng et al., IEEE TNS 62(5) 2015; LoDoPaB-CT, Sci. Data 8:109, 2021), parallel beam:

1. ``mu = mu_water * (1 + HU / 1000)`` per mm (HU below -1000 are clipped to air: mu >= 0);
2. line integrals ``p = radon(mu) * pixel_size_mm`` over ``n_views`` angles in [0, 180) degrees;
3. counts ``y = Poisson(I0 * exp(-p)) + N(0, sigma_e^2)`` with ``I0 = dose * I0_full`` photons per bin and view;
4. ``p~ = -ln(max(y, eps) / I0)``, filtered back-projection (``iradon``, ramp filter by default), back to HU.

**Dose.** ``dose`` scales the per-view flux (tube current) relative to a calibrated full dose. ``I0`` alone does not
fix the image noise (filter, pixel size, view count and the patient's attenuation all matter), so ``I0_full`` is
calibrated per slice: the flux at which a full-view scan shows ``target_noise_hu`` (default 15 HU, inside the
10-20 HU of routine abdominal CT) of noise in soft tissue, much as automatic exposure control keeps noise steady
across patient sizes. Noise variance is proportional to ``1 / I0`` (Poisson) where no ray is starved, so a few
probe simulations, each at the previous one's estimate, find it (:func:`calibrate_full_dose`). Pass
``SimulatorConfig(full_dose_i0=...)`` to reuse one flux for a whole series.

**Views.** ``n_views`` below the full count (``pi/2 * N`` rounded up to a multiple of 8, the angular Nyquist rate of
a parallel-beam scan of an N-pixel grid) gives sparse-view streaks. The per-view flux stays ``dose * I0_full``, so
the scan's total exposure is ``dose * n_views / n_full`` of full dose and its noise grows by ``sqrt(n_full/n_views)``.

**Noise measurement.** The FBP of even a noiseless full-view sinogram differs from the input (interpolation and
ramp-filter error at edges), so noise is measured as the std of (simulated - noiseless FBP with the same geometry)
inside a soft-tissue mask (input HU in [0, 100], eroded), which isolates noise from reconstruction error.

**Circle.** With ``circle=True`` only the inscribed reconstruction circle is projected and everything outside it is
air (-1000 HU, no noise), as outside a scanner's field of view; with ``circle=False`` the square is zero-padded to its
diagonal first, so anatomy in the corners (cropped slices) survives, at about twice the projection cost. The default
(``None``) picks the circle when the slice is already air outside it (as scanner images are, whose out-of-view
padding such as -3024 HU is clipped to air), which loses at most a field-of-view rim, and pads otherwise.

**Projector.** ``SimulatorConfig(projector="torch")`` (the default) projects and back-projects with
:mod:`scripts.synthesis.projector`: the geometry and interpolation weights of scikit-image's ``radon`` / ``iradon``
(same angles, detector sampling, circle handling, filters) held as sparse matrices cached per geometry, equal to
``projector="skimage"`` to float32 rounding (sinogram 1e-6 relative; FBP within 0.02 HU inside the body on real
CT). Only the outermost pixels of a padded square's corners are sampled slightly differently.

Timings: ``python benchmarks/simulator.py`` (medians of 3, both projectors in one process, one real abdomen slice
with the couch, padded square), torch 2.14 on a 2-core AMD EPYC shared with other jobs. Full-view scan with
``full_dose_i0`` given, skimage / torch: 256x256 (408 views) 0.88 / 0.06 s (15x); 512x512 (808 views) 9.6 / 0.42 s
(23x); 512x512 at 101 views 1.2 / 0.09 s (13x). Calibrating a slice: 2.0 / 0.14 s and 14.7 / 0.84 s. The torch
figures reuse the cached matrices, as every slice of a series after the first does; building them costs the first
512x512 slice about 1.3 s more (1.7 s in all) and holds about 2 GB. The forward projection is most of the skimage
cost: :class:`SliceSimulator` computes it once per slice and takes sparse-view sinograms as exact subsets of the full
scan when ``n_views`` divides the full count; a further dose or seed then costs only the reconstruction.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from skimage.transform import iradon, radon

from scripts.ctio.arrays import checked_slice
from scripts.synthesis.projector import iradon_fast, radon_fast

__all__ = [
    "SimulatorConfig",
    "FullDoseCalibration",
    "SliceSimulator",
    "simulate_low_dose",
    "calibrate_full_dose",
    "soft_tissue_mask",
    "soft_tissue_noise",
    "full_view_count",
    "projection_angles",
]

AIR_HU = -1000.0
_MIN_SIZE = 8
_MIN_MASK_PIXELS = 64
_MAX_DENSE_OUTSIDE = 0.01
_FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann", None)
_PROJECTORS = ("torch", "skimage")


@dataclass(frozen=True)
class SimulatorConfig:
    """Physics and reconstruction settings of the low-dose simulator.

    Attributes:
        mu_water_per_mm: linear attenuation of water, about 0.02 /mm at the 60-70 keV effective energy of CT.
        full_dose_i0: incident photons per detector bin and view at dose 1.0; None calibrates it per slice.
        target_noise_hu: soft-tissue noise std (HU) that defines full dose when calibrating.
        electronic_noise: std of the additive Gaussian electronic noise, in photon counts (default: variance
            10 counts^2, the order used in low-dose simulation studies).
        count_floor: floor ``eps`` on counts before the log; zero or negative counts (photon starvation) become
            this value, which is what makes very low doses streak. 0.1 as in LoDoPaB-CT.
        filter_name: FBP filter, one of ramp, shepp-logan, cosine, hamming, hann, or None.
        interpolation: back-projection interpolation of ``iradon`` (linear, nearest, cubic).
        full_views: view count of a full scan; None uses :func:`full_view_count`.
        circle: True = project only the inscribed circle (faster; outside set to air), False = the whole square
            (zero-padded), None = the circle when the slice is air outside it (at most 1 % of the pixels there
            denser than -900 HU, which allows for a field-of-view rim), else the square.
        soft_tissue_hu: HU range of the soft-tissue mask used to measure noise.
        mask_erosion: erosion (pixels) of the soft-tissue mask, to stay clear of organ boundaries.
        calibration_seed: seed of the calibration probes, so that the calibrated flux never depends on ``seed``.
        probe_i0: flux of the first calibration probe.
        calibration_tolerance: relative error of the calibrated noise that ends the calibration.
        projector: ``torch`` (cached sparse matrices, :mod:`scripts.synthesis.projector`, the same geometry and
            weights as scikit-image to float32 rounding, 10-30x faster once built) or ``skimage`` (``radon`` /
            ``iradon`` themselves, no cache). ``torch`` supports ``interpolation="linear"`` only.
    """

    mu_water_per_mm: float = 0.02
    full_dose_i0: float | None = None
    target_noise_hu: float = 15.0
    electronic_noise: float = math.sqrt(10.0)
    count_floor: float = 0.1
    filter_name: str | None = "ramp"
    interpolation: str = "linear"
    full_views: int | None = None
    circle: bool | None = None
    soft_tissue_hu: tuple[float, float] = (0.0, 100.0)
    mask_erosion: int = 2
    calibration_seed: int = 20230
    probe_i0: float = 1.0e5
    calibration_tolerance: float = 0.03
    projector: str = "torch"

    def __post_init__(self) -> None:
        if not self.mu_water_per_mm > 0:
            raise ValueError(f"mu_water_per_mm must be > 0, got {self.mu_water_per_mm}")
        if self.full_dose_i0 is not None and not self.full_dose_i0 > 0:
            raise ValueError(f"full_dose_i0 must be > 0 or None, got {self.full_dose_i0}")
        if not self.target_noise_hu > 0 or not self.probe_i0 > 0 or not self.count_floor > 0:
            raise ValueError("target_noise_hu, probe_i0 and count_floor must be > 0")
        if self.electronic_noise < 0:
            raise ValueError(f"electronic_noise must be >= 0, got {self.electronic_noise}")
        if self.filter_name not in _FILTERS:
            raise ValueError(f"filter_name must be one of {_FILTERS}, got {self.filter_name!r}")
        if self.full_views is not None and self.full_views < 2:
            raise ValueError(f"full_views must be >= 2 or None, got {self.full_views}")
        if not 0 < self.calibration_tolerance < 1:
            raise ValueError(f"calibration_tolerance must be in (0, 1), got {self.calibration_tolerance}")
        if self.projector not in _PROJECTORS:
            raise ValueError(f"projector must be one of {_PROJECTORS}, got {self.projector!r}")
        if self.projector == "torch" and self.interpolation != "linear":
            raise ValueError(f"projector 'torch' interpolates linearly only, got interpolation={self.interpolation!r}")


@dataclass(frozen=True)
class FullDoseCalibration:
    """Result of :func:`calibrate_full_dose`.

    Attributes:
        i0: calibrated full-dose flux (photons per detector bin and view).
        noise_hu: soft-tissue noise std measured in a simulation at ``i0`` (the accepted probe).
        target_noise_hu: the noise the calibration aimed at.
        n_views: full view count of the calibration scan.
    """

    i0: float
    noise_hu: float
    target_noise_hu: float
    n_views: int


def full_view_count(size: int) -> int:
    """Full-scan view count for an N-pixel grid: ``pi/2 * N`` rounded up to a multiple of 8.

    ``pi/2 * N`` views sample the angles at the Nyquist rate of a parallel-beam scan; a multiple of 8 makes 1/2,
    1/4 and 1/8 of the views exact subsets of the full scan.
    """
    return int(8 * math.ceil(math.pi / 2 * size / 8))


def projection_angles(n_views: int) -> np.ndarray:
    """Equally spaced projection angles in degrees over [0, 180)."""
    if n_views < 2:
        raise ValueError(f"n_views must be >= 2, got {n_views}")
    return np.linspace(0.0, 180.0, int(n_views), endpoint=False)


def _check_slice(hu: np.ndarray) -> np.ndarray:
    """Validate a HU slice and return it as float64 with HU below -1000 clipped to air."""
    # Values below air (e.g. -3024 outside a scanner's field of view) are padding, not negative attenuation.
    return np.maximum(checked_slice(hu, "hu", _MIN_SIZE), AIR_HU)


def _pad_square(hu: np.ndarray) -> np.ndarray:
    """Pad a rectangular slice with air to a centred square (radon needs a square grid)."""
    rows, cols = hu.shape
    size = max(rows, cols)
    top, left = (size - rows) // 2, (size - cols) // 2
    return np.pad(hu, ((top, size - rows - top), (left, size - cols - left)), constant_values=AIR_HU)


def _crop_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo :func:`_pad_square`."""
    top, left = (image.shape[0] - shape[0]) // 2, (image.shape[1] - shape[1]) // 2
    return image[top : top + shape[0], left : left + shape[1]]


def _outside_circle(size: int) -> np.ndarray:
    """Mask of the pixels outside the inscribed reconstruction circle (the definition ``iradon`` uses)."""
    centre = size // 2
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre) ** 2 + (xx - centre) ** 2 > centre**2


def _air_outside(square: np.ndarray, outside: np.ndarray) -> bool:
    """True when at most 1 % of the pixels outside the circle are denser than -900 HU.

    The tolerance admits the rim of a scanner's field of view, which rarely matches the inscribed circle to the pixel.
    """
    return bool(np.mean(square[outside] > -900.0) <= _MAX_DENSE_OUTSIDE)


def soft_tissue_mask(hu: np.ndarray, config: SimulatorConfig | None = None) -> np.ndarray:
    """Pixels of soft tissue in a full-dose slice, eroded away from boundaries, for noise measurement.

    Falls back to the whole body (HU > -500, eroded) when a slice holds too little soft tissue.

    Args:
        hu: full-dose slice in HU.
        config: simulator settings (``soft_tissue_hu``, ``mask_erosion``); default settings if None.

    Returns:
        Boolean mask with the shape of ``hu``.

    Raises:
        ValueError: the slice holds fewer than 64 pixels of tissue to measure in.
    """
    config = config or SimulatorConfig()
    hu = np.asarray(hu, dtype=np.float64)
    low, high = config.soft_tissue_hu
    for mask in ((hu >= low) & (hu <= high), hu > -500.0):
        if config.mask_erosion > 0:
            mask = ndimage.binary_erosion(mask, iterations=config.mask_erosion)
        if mask.sum() >= _MIN_MASK_PIXELS:
            return mask
    raise ValueError(f"slice has fewer than {_MIN_MASK_PIXELS} tissue pixels to measure noise in")


def soft_tissue_noise(simulated_hu: np.ndarray, noiseless_hu: np.ndarray, mask: np.ndarray) -> float:
    """Noise std (HU) of a simulation: std of (simulated - noiseless FBP of the same geometry) inside ``mask``.

    Args:
        simulated_hu: reconstruction from the noisy sinogram.
        noiseless_hu: reconstruction from the noiseless sinogram with the same views and filter.
        mask: where to measure, e.g. :func:`soft_tissue_mask` of the full-dose input.

    Returns:
        The standard deviation in HU.
    """
    if not (np.shape(simulated_hu) == np.shape(noiseless_hu) == np.shape(mask)):
        raise ValueError(f"shapes differ: {np.shape(simulated_hu)}, {np.shape(noiseless_hu)}, {np.shape(mask)}")
    diff = np.asarray(simulated_hu, dtype=np.float64) - np.asarray(noiseless_hu, dtype=np.float64)
    return float(diff[np.asarray(mask, dtype=bool)].std())


class SliceSimulator:
    """One full-dose slice prepared for repeated low-dose simulation.

    Sinograms (per view count) and the calibrated full-dose flux are computed once and reused, which matters
    because the forward projection dominates the cost.

    Args:
        hu: full-dose slice in HU, 2-D (a rectangular slice is padded with air to a square and cropped back).
        pixel_size_mm: pixel spacing in mm (it scales the line integrals, hence photon starvation).
        config: simulator settings; default settings if None.
    """

    def __init__(self, hu: np.ndarray, pixel_size_mm: float = 1.0, config: SimulatorConfig | None = None) -> None:
        if not pixel_size_mm > 0:
            raise ValueError(f"pixel_size_mm must be > 0, got {pixel_size_mm}")
        self.config = config or SimulatorConfig()
        self.input_hu = _check_slice(hu)
        self.pixel_size_mm = float(pixel_size_mm)
        square = _pad_square(self.input_hu)
        self.size = square.shape[0]
        outside = _outside_circle(self.size)
        self.circle = self.config.circle if self.config.circle is not None else _air_outside(square, outside)
        self._outside = outside if self.circle else None
        if self._outside is not None:
            square[self._outside] = AIR_HU
        self._mu = self.config.mu_water_per_mm * (1.0 + square / 1000.0)
        self.full_views = self.config.full_views or full_view_count(self.size)
        self._sinograms: dict[int, np.ndarray] = {}
        self._calibration: FullDoseCalibration | None = None

    # ------------------------------------------------------------------------------------------ geometry

    def sinogram(self, n_views: int | None = None) -> np.ndarray:
        """Noiseless line integrals (dimensionless), shape ``(detector bins, n_views)``."""
        n_views = self._views(n_views)
        if n_views not in self._sinograms:
            full = self._sinograms.get(self.full_views)
            if full is not None and self.full_views % n_views == 0:
                # Angles of a divisor view count are an exact subset of the full scan's angles.
                self._sinograms[n_views] = full[:, :: self.full_views // n_views]
            elif self.config.projector == "torch":
                self._sinograms[n_views] = radon_fast(self._mu, n_views, circle=self.circle) * self.pixel_size_mm
            else:
                theta = projection_angles(n_views)
                self._sinograms[n_views] = radon(self._mu, theta, circle=self.circle) * self.pixel_size_mm
        return self._sinograms[n_views]

    def reconstruct(self, line_integrals: np.ndarray) -> np.ndarray:
        """Filtered back-projection of line integrals to HU, float32, cropped to the input shape."""
        if self.config.projector == "torch":
            mu = iradon_fast(line_integrals / self.pixel_size_mm, self.size, self.config.filter_name, self.circle)
        else:
            mu = iradon(
                line_integrals / self.pixel_size_mm,
                projection_angles(line_integrals.shape[1]),
                output_size=self.size,
                filter_name=self.config.filter_name,
                interpolation=self.config.interpolation,
                circle=self.circle,
            )
        hu = 1000.0 * (mu / self.config.mu_water_per_mm - 1.0)
        if self._outside is not None:
            hu[self._outside] = AIR_HU
        return _crop_to(hu, self.input_hu.shape).astype(np.float32)

    def with_filter(self, filter_name: str | None) -> SliceSimulator:
        """The same slice and settings reconstructed with another FBP filter, sharing this simulator's sinograms
        (the projection does not depend on the filter; the calibration does, so it is not carried over)."""
        other = copy.copy(self)
        other.config = replace(self.config, filter_name=filter_name)
        other._calibration = None
        return other

    def noiseless(self, n_views: int | None = None) -> np.ndarray:
        """FBP of the noiseless sinogram: the reference that isolates noise from reconstruction error."""
        return self.reconstruct(self.sinogram(n_views))

    # ------------------------------------------------------------------------------------------ noise

    def noisy_line_integrals(self, i0: float, n_views: int | None, rng: np.random.Generator) -> np.ndarray:
        """Post-log line integrals of one noisy scan at incident flux ``i0`` (photons per bin and view)."""
        expected = i0 * np.exp(-self.sinogram(n_views))
        counts = rng.poisson(expected).astype(np.float64)
        if self.config.electronic_noise > 0:
            counts += rng.normal(0.0, self.config.electronic_noise, size=counts.shape)
        return -np.log(np.maximum(counts, self.config.count_floor) / i0)

    def simulate(
        self, dose: float = 1.0, n_views: int | None = None, seed: int | np.random.Generator = 0
    ) -> np.ndarray:
        """Simulate one scan at ``dose`` (fraction of calibrated full dose) and ``n_views`` views.

        Args:
            dose: per-view flux relative to full dose, > 0 (1.0 = full dose).
            n_views: number of views over 180 degrees; None = full scan.
            seed: seed or numpy Generator of the noise; the same seed gives the same image.

        Returns:
            Reconstructed slice in HU, float32, the input's shape.
        """
        if not (isinstance(dose, (int, float, np.floating, np.integer)) and math.isfinite(dose) and dose > 0):
            raise ValueError(f"dose must be a finite number > 0, got {dose!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        i0 = float(dose) * self.full_dose_i0
        return self.reconstruct(self.noisy_line_integrals(i0, n_views, rng))

    # ------------------------------------------------------------------------------------------ calibration

    @property
    def full_dose_i0(self) -> float:
        """The configured full-dose flux, or the one calibrated on this slice (computed on first use)."""
        if self.config.full_dose_i0 is not None:
            return float(self.config.full_dose_i0)
        return self.calibrate().i0

    def calibrate(self, n_probes: int = 2, max_probes: int = 8) -> FullDoseCalibration:
        """Find the flux at which a full-view scan of this slice has ``target_noise_hu`` in soft tissue.

        Noise variance times flux is a constant of the slice and geometry (Poisson statistics) where no ray is
        starved, so a probe at ``i0`` gives the estimate ``i0 * (noise / target)^2``, and the next probe runs at it.
        Only the latest estimate is kept: on a large patient the first probe (``probe_i0``) starves the densest rays,
        whose noise then grows far faster than ``1/sqrt(I0)`` and overestimates the flux (averaging it in left such
        slices at about 8.5 HU instead of 15). Probing stops once a probe's noise is within
        ``calibration_tolerance`` of the target.

        Args:
            n_probes: minimum number of probe simulations (>= 1).
            max_probes: most probe simulations; if none reaches the tolerance, the probe closest to the target wins.

        Returns:
            The calibration: the flux of the accepted probe and the noise measured in it.
        """
        if self._calibration is not None:
            return self._calibration
        if not 1 <= n_probes <= max_probes:
            raise ValueError(f"need 1 <= n_probes <= max_probes, got {n_probes} and {max_probes}")
        rng = np.random.default_rng(self.config.calibration_seed)
        mask = soft_tissue_mask(self.input_hu, self.config)
        if self._outside is not None:
            mask &= ~_crop_to(self._outside, mask.shape)  # pixels forced to air carry no noise
        reference = self.noiseless()
        target = self.config.target_noise_hu

        def measure(i0: float) -> float:
            return soft_tissue_noise(self.reconstruct(self.noisy_line_integrals(i0, None, rng)), reference, mask)

        i0, probes = float(self.config.probe_i0), []
        for count in range(1, max_probes + 1):
            noise = measure(i0)
            probes.append((abs(noise / target - 1.0), i0, noise))
            if count >= n_probes and probes[-1][0] <= self.config.calibration_tolerance:
                break
            i0 *= (noise / target) ** 2
        _, i0, noise = min(probes)
        self._calibration = FullDoseCalibration(i0, noise, target, self.full_views)
        return self._calibration

    def _views(self, n_views: int | None) -> int:
        if n_views is None:
            return self.full_views
        if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) or n_views < 2:
            raise ValueError(f"n_views must be an integer >= 2 or None, got {n_views!r}")
        return int(n_views)


def simulate_low_dose(
    hu: np.ndarray,
    dose: float = 1.0,
    n_views: int | None = None,
    seed: int | np.random.Generator = 0,
    pixel_size_mm: float = 1.0,
    config: SimulatorConfig | None = None,
) -> np.ndarray:
    """Simulate a low-dose and/or sparse-view scan of a full-dose slice.

    Args:
        hu: full-dose slice in HU, 2-D.
        dose: per-view flux as a fraction of the calibrated full dose, > 0.
        n_views: views over 180 degrees; None = full scan (:func:`full_view_count`); fewer views give streaks.
        seed: seed or numpy Generator of the noise.
        pixel_size_mm: pixel spacing of ``hu`` in mm.
        config: simulator settings; with ``full_dose_i0=None`` (default) full dose is calibrated on this slice.

    Returns:
        Simulated slice in HU, float32, same shape as ``hu``.
    """
    return SliceSimulator(hu, pixel_size_mm, config).simulate(dose, n_views, seed)


def calibrate_full_dose(
    hu: np.ndarray,
    pixel_size_mm: float = 1.0,
    config: SimulatorConfig | None = None,
    target_noise_hu: float | None = None,
    n_probes: int = 2,
) -> FullDoseCalibration:
    """Calibrate the full-dose flux on a slice; reuse ``result.i0`` as ``SimulatorConfig(full_dose_i0=...)``.

    Args:
        hu: representative full-dose slice in HU (e.g. a mid-abdomen slice of the series to degrade).
        pixel_size_mm: pixel spacing in mm.
        config: simulator settings (filter, views, ...); its ``full_dose_i0`` is ignored.
        target_noise_hu: soft-tissue noise std at full dose; default ``config.target_noise_hu`` (15 HU).
        n_probes: minimum number of probe simulations.

    Returns:
        The calibrated flux and the noise measured at it.
    """
    config = replace(config or SimulatorConfig(), full_dose_i0=None)
    if target_noise_hu is not None:
        config = replace(config, target_noise_hu=float(target_noise_hu))
    return SliceSimulator(hu, pixel_size_mm, config).calibrate(n_probes)
