"""Build, once, the held-out accuracy set: real abdomen CT no training set uses, degraded by the bundle's simulator.

Source: ``../shared/data/ct_series_abdomen`` (20 contrast-enhanced slices, 512x512, 0.977 mm), evaluation-only data:
nothing is trained, tuned or selected on it. Six slices spread along the series, scored at native 512x512, each in
three families of graded degradation (severity 0 = least degraded):

- ``dose``: full-view scans at 1.0, 0.5, 0.25, 0.1, 0.05, 0.02 and 0.01 of full dose (16 to 360 HU soft-tissue
  noise);
- ``views``: the full-dose scan, then 1/2, 1/4 and 1/8 of the 808 views (404, 202, 101: streaks; the per-view flux
  stays that of full dose, so fewer views also means more noise, as in the simulator's docstring);
- ``smooth_gaussian``, ``smooth_tv``, ``smooth_nlm``: the 0.25-dose scan, then over-smoothed at three increasing
  strengths (Gaussian blur; total variation, Chambolle; non-local means) in the [0, 1] display window. Aggressive
  denoising removes noise and detail together; readers rate such images lower, so a quality model must not reward it.

The strengths are fixed here beforehand, not chosen on any result. Images shared by two families (the full-dose scan:
``dose`` 0 and ``views`` 0; the 0.25-dose scan: ``dose`` 2 and every ``smooth_*`` 0) are stored once.

**Label rule** (for the pooled metrics): the demo data's full-reference rule,
``scripts.synthesis.labels.ssim_to_score(reference_ssim(reference, image))`` = 4 x clip((SSIM - 0.15) / 0.8, 0, 1),
SSIM against the windowed source slice (the full-dose scan as stored), unrounded.

**Full dose.** The simulator's own calibration overshoots on this series (photon starvation at its first probe
flux makes it settle at about 8.5 HU instead of 15 HU), so the flux is refined here by two more Poisson-scaling
steps on one slice and then used for every slice, as a fixed tube current would be.

Layout under ``<work>/heldout``: ``sNN_<tag>.tiff`` (float32, [0, 1]), ``test.json`` (name -> label, the LDCTIQAC
test layout, so ``configs/evaluate.json`` runs on it too), ``degradations.json`` (per image: slice, families and
severities, dose, views, smoothing, SSIM, label), ``settings.json``, ``calibration.json`` and ``slices/sNN.json``
(one per finished slice: an interrupted build resumes there).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

from scripts.ctio.dicom import find_dicom_series
from scripts.ctio.dicom_pixels import iter_series_slices
from scripts.ctio.window import apply_hu_window
from scripts.synthesis.labels import reference_ssim, ssim_to_score
from scripts.synthesis.simulate import SimulatorConfig, SliceSimulator, soft_tissue_mask, soft_tissue_noise
from scripts.utils.atomic import atomic_path, atomic_write_json

__all__ = ["HeldoutSettings", "SMOOTHERS", "build_heldout"]

logger = logging.getLogger(__name__)

SMOOTHERS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "gaussian": lambda image, sigma: ndimage.gaussian_filter(image, sigma),
    "tv": lambda image, weight: denoise_tv_chambolle(image, weight=weight),
    "nlm": lambda image, h: denoise_nl_means(image, h=h, patch_size=5, patch_distance=6, fast_mode=True),
}


@dataclass(frozen=True)
class HeldoutSettings:
    """What the held-out set holds (stored in ``settings.json``; a cache built otherwise is refused).

    Attributes:
        n_slices: slices taken at equal steps along the series, first and last included.
        doses: dose fractions of the ``dose`` family, least degraded first.
        view_divisors: the ``views`` family beyond the full scan (808 views / divisor).
        smoothing_dose: dose of the scan that the ``smooth_*`` families over-smooth.
        smoothing: per smoother, its strengths in increasing order (Gaussian sigma in pixels; TV weight and NLM ``h``
            in window units, where the 0.25-dose noise is about 0.02).
        target_noise_hu: soft-tissue noise that defines full dose.
        seed: seed of every noise realisation.
    """

    n_slices: int = 6
    doses: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01)
    view_divisors: tuple[int, ...] = (2, 4, 8)
    smoothing_dose: float = 0.25
    smoothing: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {"gaussian": (0.75, 1.5, 3.0), "tv": (0.02, 0.05, 0.12), "nlm": (0.01, 0.02, 0.04)}
    )
    target_noise_hu: float = 15.0
    seed: int = 2025


# --------------------------------------------------------------------------------------------- source and dose


def spaced_series_slices(series_dir: Path, n_slices: int) -> list[tuple[int, np.ndarray, float]]:
    """(series index, HU slice, pixel spacing mm) of ``n_slices`` slices at equal steps along the series."""
    series = find_dicom_series(series_dir, log=False)[0]
    wanted = {int(round(i)) for i in np.linspace(0, len(series.slices) - 1, n_slices)}
    picked = iter_series_slices(series, keep=lambda index: index in wanted)
    return [(info["slice_index"], hu, float(info["pixel_spacing"][0])) for hu, info in picked]


def _calibrate(hu: np.ndarray, spacing: float, target: float, steps: int = 2) -> dict:
    """Full-dose flux at which this slice shows ``target`` HU soft-tissue noise (simulator estimate, then refined).

    Noise variance scales as 1/flux where no detector bin starves, so each step rescales the flux by (noise/target)^2.
    """
    sim = SliceSimulator(hu, spacing, SimulatorConfig(target_noise_hu=target))
    estimate, mask, reference = sim.calibrate().i0, soft_tissue_mask(sim.input_hu), sim.noiseless()

    def noise_at(i0: float) -> float:  # the simulator's dose is a multiple of its own estimate
        return soft_tissue_noise(sim.simulate(i0 / estimate, None, seed=0), reference, mask)

    i0, history = estimate, []
    for _ in range(steps):
        history.append({"i0": i0, "noise_hu": noise_at(i0)})
        i0 *= (history[-1]["noise_hu"] / target) ** 2
    history.append({"i0": i0, "noise_hu": noise_at(i0)})
    return {"steps": history, "i0": i0, "target_noise_hu": target}


# --------------------------------------------------------------------------------------------- one slice


def _labelled(reference: np.ndarray, image: np.ndarray) -> dict:
    ssim = reference_ssim(reference, image)
    return {"ssim": round(ssim, 5), "label": ssim_to_score(ssim)}


def _scans(sim: SliceSimulator, settings: HeldoutSettings, seeds: np.ndarray) -> list[tuple[str, dict, np.ndarray]]:
    """(tag, record, windowed image) of the dose and view families; full-view scans record their noise in HU."""
    out = []
    mask, noiseless = soft_tissue_mask(sim.input_hu), sim.noiseless()
    for k, dose in enumerate(settings.doses):
        families = {"dose": k} | ({"views": 0} if dose == 1.0 else {})
        hu = sim.simulate(dose, None, int(seeds[k]))
        record = {"families": families, "dose": dose, "n_views": sim.full_views}
        record["noise_hu"] = round(soft_tissue_noise(hu, noiseless, mask), 2)
        out.append((f"dose{dose:g}", record, apply_hu_window(hu)))
    for k, divisor in enumerate(settings.view_divisors, start=1):
        n_views = sim.full_views // divisor
        image = apply_hu_window(sim.simulate(1.0, n_views, int(seeds[len(settings.doses) + k])))
        out.append((f"views{n_views}", {"families": {"views": k}, "dose": 1.0, "n_views": n_views}, image))
    return out


def _smoothed(base: np.ndarray, settings: HeldoutSettings) -> list[tuple[str, dict, np.ndarray]]:
    """(tag, record, image) of the over-smoothing families, applied to the windowed ``smoothing_dose`` scan."""
    out = []
    for method, strengths in settings.smoothing.items():
        for k, strength in enumerate(strengths, start=1):
            image = np.clip(SMOOTHERS[method](base.astype(np.float64), strength), 0.0, 1.0).astype(np.float32)
            record = {"families": {f"smooth_{method}": k}, "dose": settings.smoothing_dose, "smoothing": method}
            out.append((f"{method}{strength:g}", record | {"strength": strength}, image))
    return out


def _build_slice(index: int, hu: np.ndarray, spacing: float, i0: float, settings: HeldoutSettings, out: Path) -> list:
    """Simulate, smooth, label and write one slice's images; return their records."""
    sim = SliceSimulator(hu, spacing, SimulatorConfig(full_dose_i0=i0))
    seeds = np.random.SeedSequence([settings.seed, index]).generate_state(len(settings.doses) + 8)
    images = _scans(sim, settings, seeds)
    base = next(image for tag, _, image in images if tag == f"dose{settings.smoothing_dose:g}")
    for _, record, _ in images:
        if record["dose"] == settings.smoothing_dose and record["n_views"] == sim.full_views:
            record["families"] |= {f"smooth_{m}": 0 for m in settings.smoothing}
    images += _smoothed(base, settings)
    reference = apply_hu_window(sim.input_hu)
    records = []
    for tag, record, image in images:
        name = f"s{index:02d}_{tag}.tiff"
        with atomic_path(out / name) as tmp:
            tifffile.imwrite(tmp, image.astype(np.float32))
        records.append({"name": name, "slice": index, **record, **_labelled(reference, image)})
    return records


# --------------------------------------------------------------------------------------------- whole set


def _check_settings(out: Path, settings: HeldoutSettings, series_dir: Path) -> None:
    """Refuse a cache built with other settings (its images would be mixed with new ones)."""
    wanted = {"settings": asdict(settings), "series": str(series_dir.resolve())}
    wanted = json.loads(json.dumps(wanted))  # tuples -> lists, as they come back from the file
    path = out / "settings.json"
    if path.is_file():
        if json.loads(path.read_text()) != wanted:
            raise ValueError(f"{out} was built with other settings ({path}); pass another --work or delete it")
    else:
        atomic_write_json(path, wanted)


def _calibration(out: Path, slices: list, target: float) -> dict:
    path = out / "calibration.json"
    if path.is_file():
        return json.loads(path.read_text())
    index, hu, spacing = slices[len(slices) // 2]
    calibration = {"slice": index, **_calibrate(hu, spacing, target)}
    atomic_write_json(path, calibration)
    return calibration


def build_heldout(work: Path, series_dir: Path, settings: HeldoutSettings | None = None) -> Path:
    """Build (or finish, or reuse) the held-out set under ``work/heldout``; return that folder.

    Args:
        work: the benchmark's cache folder.
        series_dir: the shared abdomen DICOM series.
        settings: what to build; the defaults are the benchmark's.
    """
    settings = settings or HeldoutSettings()
    out = Path(work) / "heldout"
    if (out / "test.json").is_file() and (out / "settings.json").is_file():
        _check_settings(out, settings, series_dir)
        return out
    (out / "slices").mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings, series_dir)
    slices = spaced_series_slices(series_dir, settings.n_slices)
    i0 = _calibration(out, slices, settings.target_noise_hu)["i0"]
    records = []
    for index, hu, spacing in slices:
        done = out / "slices" / f"s{index:02d}.json"
        if not done.is_file():
            start = time.perf_counter()
            atomic_write_json(done, _build_slice(index, hu, spacing, i0, settings, out))
            print(f"  held-out slice {index:2d}: built in {time.perf_counter() - start:.0f} s", flush=True)
        records += json.loads(done.read_text())
    atomic_write_json(out / "degradations.json", records)
    atomic_write_json(out / "test.json", {r["name"]: r["label"] for r in records})
    return out
