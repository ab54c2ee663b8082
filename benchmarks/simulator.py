"""Print how fast the low-dose CT simulator runs with each projector, and how closely the fast one agrees.

Usage (from the repository root): ``python benchmarks/simulator.py [--source DIR] [--sizes 256 512]
[--repeats 3] [--threads N]``

One real full-dose slice (the middle slice of the first series under ``--source``, default the training-licensed
``shared/data/ct_sources/pancreas_ct_cbct_seg_001``: an abdomen with the couch, line integrals up to about 10) is
resampled to each size and simulated with ``projector="skimage"`` (scikit-image radon / iradon) and
``projector="torch"`` (cached sparse matrices) in turn, in one process, so that both see the same machine load:

- per slice: a full-view scan (full dose flux given) and a sparse-view scan (1/8 of the views), each on a fresh
  :class:`SliceSimulator`, so it includes the forward projection; for the fast projector ``first`` includes building
  the geometry's matrices and ``warm`` reuses them, as every later slice of a series does;
- calibration: the full-dose flux search on a fresh simulator;
- validation: soft-tissue noise ratio (fast / skimage) at the same flux and seed, sparse-view streak ratio (std of
  the noiseless n/8-view FBP minus the noiseless full-view FBP), and the largest FBP difference inside the body.

Medians over ``--repeats``. Figures only: it never asserts; the machine may be shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tfkt_bundle"))

from scripts.ctio.dicom import find_dicom_series  # noqa: E402
from scripts.ctio.dicom_pixels import iter_series_slices  # noqa: E402
from scripts.synthesis import projector  # noqa: E402
from scripts.synthesis.simulate import SimulatorConfig, SliceSimulator, soft_tissue_mask, soft_tissue_noise  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "ct_sources" / "pancreas_ct_cbct_seg_001"


def load_slice(source: Path) -> tuple[np.ndarray, float]:
    """Middle slice (HU) of the first series under ``source`` and its pixel spacing in mm."""
    series = find_dicom_series(source)
    if not series:
        raise SystemExit(f"no CT series under {source}")
    middle = len(series[0]) // 2
    hu, info = next(iter_series_slices(series[0], keep=lambda index: index == middle))
    return hu.astype(np.float64), float(info["pixel_spacing"][0])


def resample(hu: np.ndarray, spacing: float, size: int) -> tuple[np.ndarray, float]:
    from skimage.transform import resize

    if hu.shape == (size, size):
        return hu, spacing
    out = resize(hu, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return out, spacing * hu.shape[0] / size


def _seconds(case, config: SimulatorConfig) -> float:
    start = time.perf_counter()
    case(config)
    return time.perf_counter() - start


def timings(hu: np.ndarray, spacing: float, i0: float, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds per case and projector; the fast projector's first run (matrix build) separately."""
    results: dict[str, dict[str, list[float]]] = {}
    sparse = SliceSimulator(hu, spacing).full_views // 8
    cases = {
        "full views": lambda config: SliceSimulator(hu, spacing, config).simulate(1.0, None, 0),
        f"sparse ({sparse} views)": lambda config: SliceSimulator(hu, spacing, config).simulate(1.0, sparse, 0),
        "calibration": lambda config: SliceSimulator(hu, spacing, replace(config, full_dose_i0=None)).calibrate(),
    }
    fast, slow = (SimulatorConfig(full_dose_i0=i0, projector=name) for name in ("torch", "skimage"))
    for name, case in cases.items():
        row = results.setdefault(name, {"skimage": [], "torch first": [], "torch warm": []})
        projector.clear_cache()
        row["torch first"].append(_seconds(case, fast))
        for _ in range(repeats):  # interleaved, so that a change of load hits both
            row["skimage"].append(_seconds(case, slow))
            row["torch warm"].append(_seconds(case, fast))
    return {name: {k: statistics.median(v) for k, v in row.items()} for name, row in results.items()}


def validation(hu: np.ndarray, spacing: float, i0: float) -> dict[str, float]:
    fast = SliceSimulator(hu, spacing, SimulatorConfig(full_dose_i0=i0, projector="torch"))
    slow = SliceSimulator(hu, spacing, SimulatorConfig(full_dose_i0=i0, projector="skimage"))
    mask = soft_tissue_mask(hu)
    body = hu > -500
    out = {"max |FBP difference| in body (HU)": float(np.abs(fast.noiseless() - slow.noiseless())[body].max())}
    for dose in (1.0, 0.25):
        noise = [soft_tissue_noise(s.simulate(dose, None, 1), s.noiseless(), mask) for s in (fast, slow)]
        out[f"noise at dose {dose} (HU, fast / skimage)"] = noise[0], noise[1]
        out[f"noise ratio at dose {dose}"] = noise[0] / noise[1]
    sparse = fast.full_views // 8
    streaks = [float((s.noiseless(sparse) - s.noiseless())[body].std()) for s in (fast, slow)]
    out[f"streak std, {sparse} views (HU, fast / skimage)"] = streaks[0], streaks[1]
    out["streak ratio"] = streaks[0] / streaks[1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of a CT series")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    hu, spacing = load_slice(args.source)
    print(f"slice {args.source.name}: {hu.shape}, {spacing:.3f} mm; torch threads {torch.get_num_threads()}")
    for size in args.sizes:
        grid, pixel = resample(hu, spacing, size)
        calibrated = SliceSimulator(grid, pixel).calibrate()
        sim = SliceSimulator(grid, pixel)
        print(
            f"\n== {size}x{size}, {pixel:.3f} mm, {sim.full_views} views, circle={sim.circle}, "
            f"max line integral {sim.sinogram().max():.1f}; calibrated I0 {calibrated.i0:.3g} "
            f"-> {calibrated.noise_hu:.2f} HU (target {calibrated.target_noise_hu:g})"
        )
        print(f"{'case':<22}{'skimage s':>11}{'fast first s':>14}{'fast warm s':>13}{'speed-up (warm)':>17}")
        for name, row in timings(grid, pixel, calibrated.i0, args.repeats).items():
            ratio = row["skimage"] / row["torch warm"]
            print(
                f"{name:<22}{row['skimage']:>11.2f}{row['torch first']:>14.2f}{row['torch warm']:>13.3f}{ratio:>16.1f}x"
            )
        for name, value in validation(grid, pixel, calibrated.i0).items():
            text = " / ".join(f"{v:.3f}" for v in value) if isinstance(value, tuple) else f"{value:.4f}"
            print(f"  {name}: {text}")


if __name__ == "__main__":
    main()
