"""Check that the default HU window matches how the LDCTIQAC 2023 slices were windowed (a check, not a fit).

The default window [-1000, 400] HU comes from eeulig/ldct-benchmark's re-implementation of the challenge data
(centre 1024 - 300 on HU + 1024, width 1400). A third party states the soft-tissue display window L40/W350 instead.
This script takes the shared full-dose abdomen DICOM series (HU), windows it both ways, and compares the in-body
intensity histograms with the shared LDCTIQAC samples:

- the fat and soft-tissue peak positions (the two most prominent histogram peaks inside the body), and the HU the
  LDCTIQAC peaks would have under each window;
- the fraction of in-body pixels clipped at 0 or 1 (a narrow window clips all fat below its low end to 0);
- Wasserstein-1 and Jensen-Shannon distances between the in-body histograms.

The LDCTIQAC samples are evaluation-only data: nothing is fitted or chosen from them here, the default window is
fixed beforehand; the figures only say whether the stated default is consistent with the data.

Usage (from the repository root): ``python benchmarks/window_check.py [--series DIR] [--samples DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.signal import find_peaks
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from skimage.filters import threshold_otsu

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tfkt_bundle"))

from scripts.ctio.dicom import find_dicom_series  # noqa: E402
from scripts.ctio.dicom_pixels import iter_series_slices  # noqa: E402
from scripts.ctio.images import read_image_file  # noqa: E402
from scripts.ctio.window import DEFAULT_HU_WINDOW, apply_hu_window, hu_window_from_level_width, invert_hu_window  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "data"
SOFT_TISSUE_WINDOW_HU = hu_window_from_level_width(40, 350)
BODY_THRESHOLD_HU = -500.0  # between air (-1000) and fat (-100): the body outline in HU, whatever the window
BINS = np.linspace(0.0, 1.0, 101)
CLIP_EPS = 1e-3


def largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """The largest connected region (the patient, not the table) with its holes (bowel gas, lungs) filled."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(labels == largest)


def dicom_body_values(series_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """HU slices of the first CT series in ``series_dir`` and their body masks (from HU, window-independent)."""
    series = find_dicom_series(series_dir)[0]
    slices = [hu for hu, _ in iter_series_slices(series)]
    return slices, [largest_component_filled(hu > BODY_THRESHOLD_HU) for hu in slices]


def ldct_body_values(sample_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """In-body values of each LDCTIQAC sample (mask by Otsu's threshold, which assumes no window) and the scores."""
    scores = json.loads((sample_dir / "scores.json").read_text())
    values = {}
    for path in sorted(sample_dir.glob("*.tif*")):
        image = read_image_file(path)
        values[path.name] = image[largest_component_filled(image > threshold_otsu(image))]
    return values, scores


def two_peaks(values: np.ndarray) -> tuple[float, float]:
    """Positions of the two most prominent peaks of the smoothed histogram, ignoring the clipped end bins."""
    counts, _ = np.histogram(values, bins=BINS)
    smooth = ndimage.gaussian_filter1d(counts[1:-1].astype(float), 1.0)
    peaks, props = find_peaks(smooth, prominence=0.01 * smooth.max())
    top = peaks[np.argsort(props["prominences"])[-2:]] + 1
    centres = (BINS[:-1] + BINS[1:]) / 2
    found = sorted(float(centres[i]) for i in top)
    return (found[0], found[-1]) if found else (float("nan"), float("nan"))


def describe(values: np.ndarray) -> dict[str, float]:
    fat, soft = two_peaks(values)
    return {
        "fat_peak": fat,
        "soft_peak": soft,
        "clip0": float(np.mean(values <= CLIP_EPS)),
        "clip1": float(np.mean(values >= 1 - CLIP_EPS)),
    }


def distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Wasserstein-1 (in [0, 1] window units) and Jensen-Shannon distance (base 2) of two value sets."""
    hist_a, _ = np.histogram(a, bins=BINS)
    hist_b, _ = np.histogram(b, bins=BINS)
    return float(wasserstein_distance(a, b)), float(jensenshannon(hist_a, hist_b, base=2))


def print_row(name: str, stats: dict[str, float], dist: tuple[float, float] | None = None) -> None:
    tail = f"  W1 {dist[0]:.4f}  JS {dist[1]:.3f}" if dist else ""
    print(
        f"{name:<44} fat peak {stats['fat_peak']:.3f}  soft-tissue peak {stats['soft_peak']:.3f}  "
        f"clipped at 0 {100 * stats['clip0']:5.2f} %  at 1 {100 * stats['clip1']:5.2f} %{tail}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=Path, default=SHARED / "ct_series_abdomen")
    parser.add_argument("--samples", type=Path, default=SHARED / "ldctiqac_samples")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for folder in (args.series, args.samples):
        if not folder.is_dir():
            print(f"{folder} is absent: this check needs the shared data beside the checkout", file=sys.stderr)
            return 2

    slices, masks = dicom_body_values(args.series)
    hu = np.concatenate([s[m] for s, m in zip(slices, masks)])
    ldct, scores = ldct_body_values(args.samples)
    pooled = np.concatenate(list(ldct.values()))
    less_noisy = np.concatenate([v for name, v in ldct.items() if scores.get(name, 0) >= 3])
    hu_fat, hu_soft = two_peaks((np.clip(hu, -300, 300) + 300) / 600)
    print(
        f"DICOM series: {len(slices)} slices, {hu.size} in-body pixels; HU peaks: fat {hu_fat * 600 - 300:.0f}, "
        f"soft tissue {hu_soft * 600 - 300:.0f} (bin 6 HU)"
    )
    print(f"LDCTIQAC samples: {len(ldct)} images, {pooled.size} in-body pixels ({less_noisy.size} with score >= 3)\n")

    windows = {"default": tuple(DEFAULT_HU_WINDOW), "soft tissue L40/W350": SOFT_TISSUE_WINDOW_HU}
    for label, window in windows.items():
        windowed = apply_hu_window(hu, window)
        print_row(f"DICOM, {label} {list(window)}", describe(windowed), distances(windowed, pooled))
    print_row("LDCTIQAC, all 10", describe(pooled))
    print_row("LDCTIQAC, score >= 3 (less noise)", describe(less_noisy))

    stats = describe(pooled)
    print(
        "\nHU the LDCTIQAC peaks would have under each window (DICOM series, same anatomy type: "
        f"fat {hu_fat * 600 - 300:.0f}, soft tissue {hu_soft * 600 - 300:.0f}):"
    )
    for label, window in windows.items():
        print(
            f"  {label:<22} fat {float(invert_hu_window(stats['fat_peak'], window)):6.0f} HU   "
            f"soft tissue {float(invert_hu_window(stats['soft_peak'], window)):6.0f} HU"
        )
    print("\nW1/JS: distance of the windowed DICOM in-body histogram to the pooled LDCTIQAC one (lower = closer).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
