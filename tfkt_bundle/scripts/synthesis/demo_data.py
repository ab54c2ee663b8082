"""Built-in demo data, generated offline: a natural-image IQA set and low-dose CT sets in the LDCTIQAC 2023 layout.

**The demo scores are synthetic: no person rated these images.** Every score is a full-reference quality of a degraded
image against its clean source (SSIM, Wang et al. 2004, on grayscale in [0, 1], 11x11 Gaussian window with sigma 1.5),
mapped linearly onto the LDCTIQAC scale: ``score = 4 * clip((SSIM - 0.15) / (0.95 - 0.15), 0, 1)``, i.e. SSIM 0.95
or better = 4 (excellent), 0.15 or worse = 0 (bad). The demo exists so that ``make demo`` can run natural pre-training,
CT fine-tuning and evaluation end to end without network access; a model trained on it learns to predict SSIM
against an unseen reference, not radiologist perception. Never report results on it as CT IQA performance.

Natural set (``natural/``): grayscale images that ship inside scikit-image (no download), centre-cropped to a square
and resized to 256x256 once, then distorted by Gaussian blur, Gaussian noise, JPEG (Pillow), contrast reduction,
salt-and-pepper noise and down/up-sampling, five levels each, plus the clean image (SSIM 1, score 4).
``scores.csv`` has columns ``image, score`` (what ``datasets.read_csv_dataset(..., score_range=(0, 4),
higher_is_better=True)`` needs) and ``group`` (source picture, for grouped splits), ``distortion``, ``level``
(0 = clean, 1 = mildest), ``ssim``, ``gmsd``, ``texture`` (:mod:`scripts.synthesis.labels`).

CT sets: real full-dose slices that ship in pydicom's test data and the ``pydicom-data`` package (never the project's
``../shared`` data): a pancreas-CT abdomen (``explicit_VR-UN.dcm``), a skull-base head slice
(``J2K_pixelrep_mismatch.dcm``), a thoracic-spine crop (``CT_small.dcm``, 128x128) and a CQ500 head slice
(``693_UNCR.dcm``). Each is converted to HU (RescaleSlope/Intercept), clipped at -1000 HU (values below are
field-of-view padding), put on a 512x512 grid, the LDCTIQAC format (the 512x512 slices as stored, so the simulated
noise has the grain of a native scan; ``CT_small.dcm`` upsampled bilinearly before the simulation) and degraded with
:mod:`scripts.synthesis.simulate` at 8 doses (1.0 ... 0.02 of a full dose calibrated to 15 HU soft-tissue noise) x 4
view counts (full, 1/2, 1/4, 1/8), i.e. 32 images per source and orientation; training sources are used as stored and
mirrored left-right (each with its own noise). Images are windowed to [0, 1] with
``scripts.ctio.window.apply_hu_window`` ([-1000, 400] HU) and stored as float32 TIFF; SSIM is taken against the
windowed full-dose slice. Training scores are rounded to the LDCTIQAC training grid (steps of 0.2), test scores to
its test grid (steps of 1/6).

Held out: the CQ500 head slice (``693_UNCR.dcm``) is the only source of ``ct_test/``; the other three sources make
``ct_train/``, so no anatomy is shared between them. Left out on purpose: ``693_J2KR.dcm`` (the same pixels as
``693_UNCR.dcm``), ``693_UNCI.dcm``/``693_J2KI.dcm`` (a lossy-compressed copy of the same head slice; dropped as the
same anatomy: thumbnail correlation 1.00 against at most 0.68 between different slices),
``eCT_Supplemental.dcm`` (a derived cerebral-blood-flow perfusion map, not CT anatomy) and
``bad_sequence.dcm`` (JPEG Lossless, which no installed pixel decoder reads).

Layout written under ``out_dir`` (re-running replaces the files and removes stale images)::

    natural/scores.csv, natural/images/<source>_clean.png, natural/images/<source>_<distortion>_<level>.png
    ct_train/image/0000.tif ... + ct_train/train.json {"0000.tif": 2.8, ...} + ct_train/degradations.json
    ct_test/test000.tiff ...    + ct_test/test.json                          + ct_test/degradations.json

``degradations.json`` records, per image, its source, orientation, dose, view count, seed and SSIM. File names are
shuffled with the seed, so that name order reveals neither source nor dose.

Default build: 372 natural images (12 pictures x 31) and 192 + 32 CT images (3 sources x 2 orientations x 32, and
1 x 32) at 512x512, 63 s with 2 worker processes on a 2-core machine that a training run shared; ``--quick`` (128x128;
3 pictures x 3 levels; 3 doses x 2 view counts, one orientation): 57 + 18 + 6 images in about 4 s.

CLI: ``python -m scripts.synthesis.demo_data --out DIR [--seed N] [--quick] [--workers N]``
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from scripts.ctio.dicom import find_dicom_series
from scripts.ctio.dicom_pixels import read_dicom_hu
from scripts.ctio.window import apply_hu_window
from scripts.synthesis.labels import full_reference_scores, reference_ssim, ssim_to_score
from scripts.synthesis.natural_images import (
    DEMO_DISTORTIONS,
    DEMO_PICTURES,
    DISTORTIONS,
    load_picture,
    picture_stem,
    square_u8,
)
from scripts.synthesis.simulate import SimulatorConfig, SliceSimulator
from scripts.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

__all__ = [
    "DemoSettings",
    "DEFAULT_SETTINGS",
    "QUICK_SETTINGS",
    "build_demo_data",
    "build_natural_set",
    "build_ct_sets",
    "load_ct_sources",
    "main",
]

logger = logging.getLogger(__name__)

TRAIN_STEPS = 5  # LDCTIQAC training labels: steps of 1/5 = 0.2 (mean of 5 raters)
TEST_STEPS = 6  # LDCTIQAC test labels: steps of 1/6

# Real CT slices that ship in pydicom (test_files) and pydicom-data (data_store), in order of preference.
# The last distinct anatomy is held out for ct_test. Later entries of the same anatomy are dropped (see docstring).
CT_CANDIDATES = (
    "explicit_VR-UN.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "CT_small.dcm",
    "693_UNCR.dcm",
    "693_J2KR.dcm",
    "693_UNCI.dcm",
    "693_J2KI.dcm",
)
# Thumbnails correlating above this show the same anatomy (catches lossy re-encodings of one slice).
_SAME_ANATOMY_CORR = 0.9

# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DemoSettings:
    """What the demo build generates.

    Attributes:
        natural_size: side of the square natural images.
        natural_images: picture names (see :data:`scripts.synthesis.natural_images.PICTURES`).
        distortions: distortion types (keys of :data:`scripts.synthesis.natural_images.DISTORTIONS`).
        label_rule: full-reference rule of the natural scores (:data:`scripts.synthesis.labels.RULES`; the CT
            sets always use SSIM).
        natural_levels: which of the five levels per distortion to use (1 = mildest).
        ct_size: side of the square CT simulation grid.
        doses: dose fractions of the calibrated full dose.
        view_divisors: view counts as divisors of the full count (1 = full scan, 8 = one view in eight).
        mirror: orientations per training source (False = as stored, True = mirrored left-right); the held-out
            test source is used as stored only.
        workers: processes for the CT simulation (1 = in this process).
    """

    natural_size: int = 256
    natural_images: tuple[str, ...] = DEMO_PICTURES
    distortions: tuple[str, ...] = DEMO_DISTORTIONS
    label_rule: str = "ssim"
    natural_levels: tuple[int, ...] = (1, 2, 3, 4, 5)
    ct_size: int = 512
    doses: tuple[float, ...] = (1.0, 0.5, 0.3, 0.18, 0.1, 0.06, 0.035, 0.02)
    view_divisors: tuple[int, ...] = (1, 2, 4, 8)
    mirror: tuple[bool, ...] = (False, True)
    workers: int = 2


DEFAULT_SETTINGS = DemoSettings()
QUICK_SETTINGS = DemoSettings(
    natural_size=128,
    natural_images=("astronaut", "camera", "chelsea"),
    natural_levels=(1, 3, 5),
    ct_size=128,
    doses=(1.0, 0.3, 0.06),
    view_divisors=(1, 4),
    mirror=(False,),
    workers=1,
)


def _on_grid(score: float, steps_per_unit: int) -> float:
    """Round to the nearest multiple of ``1 / steps_per_unit`` (dividing an integer keeps 3.8 exactly 3.8)."""
    return round(score * steps_per_unit) / steps_per_unit


# --------------------------------------------------------------------------------------------- natural set


def _write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def _natural_rows(name: str, index: int, settings: DemoSettings, seed: int, folder: Path) -> list[dict]:
    """Write the clean and distorted versions of one picture; return their CSV rows."""
    clean = square_u8(load_picture(name), settings.natural_size)
    reference = clean / 255.0
    versions = [("clean", 0, clean)]
    for d_index, distortion in enumerate(settings.distortions):
        func, values = DISTORTIONS[distortion]
        for level in settings.natural_levels:
            rng = np.random.default_rng([seed, index, d_index, level])
            versions.append((distortion, level, func(clean, values[level - 1], rng)))
    rows, stem = [], picture_stem(name)
    for distortion, level, image in versions:
        file_name = f"{stem}_{distortion}.png" if level == 0 else f"{stem}_{distortion}_{level}.png"
        _write_png(folder / file_name, image)
        measures = full_reference_scores(reference, image / 255.0, settings.label_rule)
        rows.append(
            {
                "image": f"images/{file_name}",
                "score": round(measures["score"], 4),
                "group": stem,
                "distortion": "none" if level == 0 else distortion,
                "level": level,
                "ssim": round(measures["ssim"], 4),
                "gmsd": round(measures["gmsd"], 4),
                "texture": round(measures["texture"], 4),
            }
        )
    return rows


def build_natural_set(out_dir: str | Path, seed: int = 0, settings: DemoSettings = DEFAULT_SETTINGS) -> Path:
    """Write the natural-image set (PNG images + ``scores.csv``) and return the CSV path.

    Args:
        out_dir: the set's folder (``<demo>/natural``).
        seed: seed of the random distortions (noise, salt and pepper).
        settings: what to generate.

    Returns:
        Path of ``scores.csv``.
    """
    out_dir = Path(out_dir)
    folder = out_dir / "images"
    rows = [
        row
        for index, name in enumerate(settings.natural_images)
        for row in _natural_rows(name, index, settings, seed, folder)
    ]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = atomic_write_text(out_dir / "scores.csv", text.getvalue())
    _remove_stale(folder, ".png", {Path(row["image"]).name for row in rows})
    return csv_path


# --------------------------------------------------------------------------------------------- CT sources


@dataclass(frozen=True)
class CTSource:
    """A full-dose CT slice in HU with its pixel spacing."""

    name: str
    hu: np.ndarray
    spacing_mm: float


def _read_dicom_hu(name: str) -> CTSource | None:
    """Read a pydicom test file as HU (the middle frame of a multi-frame file); None (logged) when it is absent or
    cannot be used here (no installed decoder, not a CT image)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)  # never reach for the network
    if path is None:
        logger.info("demo CT: %s is not installed; skipped", name)
        return None
    found = find_dicom_series(path)
    if not found:
        logger.info("demo CT: %s skipped (%s)", name, "; ".join(reason for _, reason in found.skipped))
        return None
    item = found[0].slices[len(found[0].slices) // 2]
    try:
        hu = read_dicom_hu(item.path, item.frame)
    except Exception as err:  # a missing pixel decoder or damaged pixel data: this source is left out
        logger.info("demo CT: %s cannot be decoded here (%s); skipped", name, err)
        return None
    spacing = item.pixel_spacing[0] if item.pixel_spacing else 1.0
    return CTSource(name, np.maximum(hu.astype(np.float64), -1000.0), spacing)


def _thumbnail(hu: np.ndarray) -> np.ndarray:
    from skimage.transform import resize

    return resize(apply_hu_window(hu), (64, 64), anti_aliasing=True).ravel()


def _is_duplicate(source: CTSource, kept: Sequence[CTSource]) -> bool:
    """Same pixels (hash) or same anatomy (thumbnail correlation) as a source already kept."""
    digest = hashlib.sha1(source.hu.tobytes()).hexdigest()
    thumb = _thumbnail(source.hu)
    for other in kept:
        if hashlib.sha1(other.hu.tobytes()).hexdigest() == digest:
            return True
        if other.hu.shape == source.hu.shape and np.corrcoef(thumb, _thumbnail(other.hu))[0, 1] > _SAME_ANATOMY_CORR:
            return True
    return False


def load_ct_sources(candidates: Sequence[str] = CT_CANDIDATES) -> list[CTSource]:
    """Load the distinct, decodable full-dose CT slices among ``candidates`` (in order, duplicates dropped).

    Raises:
        RuntimeError: fewer than two distinct slices (one for training, one held out) could be read.
    """
    kept: list[CTSource] = []
    for name in candidates:
        source = _read_dicom_hu(name)
        if source is not None and not _is_duplicate(source, kept):
            kept.append(source)
    if len(kept) < 2:
        raise RuntimeError(
            f"demo CT needs 2 distinct slices from pydicom/pydicom-data, found {len(kept)}; install pydicom-data"
        )
    return kept


def _to_grid(source: CTSource, size: int) -> tuple[np.ndarray, float]:
    """Resample a slice to ``size`` x ``size`` (area average when shrinking by an integer factor).

    The noise is simulated on this grid, after resampling, so its grain and texture are those of a scan
    reconstructed at this size; resampling a noisy 512x512 reconstruction instead would average the noise away
    and low-pass its texture (and upsampling would blur it).
    """
    from skimage.transform import resize

    hu = source.hu
    side = min(hu.shape)
    top, left = (hu.shape[0] - side) // 2, (hu.shape[1] - side) // 2
    hu = hu[top : top + side, left : left + side]
    if side % size == 0:
        factor = side // size
        grid = hu.reshape(size, factor, size, factor).mean(axis=(1, 3))
    else:
        grid = resize(hu, (size, size), order=1, anti_aliasing=side > size)
    return grid, source.spacing_mm * side / size


# --------------------------------------------------------------------------------------------- CT degradation


@dataclass(frozen=True)
class _CTJob:
    """One source's degradations, run in a worker process; ``plan`` rows are (name, mirror, dose, divisor, seed)."""

    source: str
    hu: np.ndarray
    spacing_mm: float
    folder: Path
    steps_per_unit: int
    plan: tuple[tuple[str, bool, float, int, int], ...]


def _simulators(job: _CTJob) -> dict[bool, SliceSimulator]:
    """Simulators per orientation, sharing the full-dose flux calibrated once on the slice as stored."""
    stored = SliceSimulator(job.hu, job.spacing_mm)
    config = SimulatorConfig(full_dose_i0=stored.calibrate().i0)
    simulators = {False: stored}
    if any(mirror for _, mirror, _, _, _ in job.plan):
        simulators[True] = SliceSimulator(job.hu[:, ::-1], job.spacing_mm, config)
    return simulators


def _run_ct_job(job: _CTJob) -> list[dict]:
    """Simulate, score and write the images of one source; return their records."""
    simulators = _simulators(job)
    records = []
    for name, mirror, dose, divisor, seed in job.plan:
        sim = simulators[mirror]
        n_views = sim.full_views // divisor
        image = apply_hu_window(sim.simulate(dose, n_views, seed))
        ssim = reference_ssim(apply_hu_window(sim.input_hu), image)
        _write_tiff(job.folder / name, image)
        records.append(
            {
                "name": name,
                "source": job.source,
                "mirrored": mirror,
                "dose": dose,
                "n_views": n_views,
                "full_views": sim.full_views,
                "full_dose_i0": round(sim.full_dose_i0, 1),
                "seed": seed,
                "ssim": round(ssim, 4),
                "score": _on_grid(ssim_to_score(ssim), job.steps_per_unit),
            }
        )
    return records


def _write_tiff(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image.astype(np.float32))


@dataclass(frozen=True)
class _Split:
    """LDCTIQAC layout of one split: ``<out>/<folder>/<image_dir>/<prefix>0000<suffix>`` + ``<folder>/<labels>``."""

    folder: str
    image_dir: str
    labels: str
    prefix: str
    digits: int
    suffix: str
    steps_per_unit: int

    def names(self, count: int, rng: np.random.Generator) -> list[str]:
        """File names in random order, so that name order reveals neither source nor dose."""
        return [f"{self.prefix}{i:0{self.digits}d}{self.suffix}" for i in rng.permutation(count)]


CT_SPLITS = (
    _Split("ct_train", "image", "train.json", "", 4, ".tif", TRAIN_STEPS),
    _Split("ct_test", "", "test.json", "test", 3, ".tiff", TEST_STEPS),
)


def _ct_jobs(sources: Sequence[CTSource], settings: DemoSettings, out_dir: Path, seed: int) -> list[list[_CTJob]]:
    """Per split (train: all sources but the last, both orientations; test: the last, as stored), one job per source
    with its file names and noise seeds."""
    jobs: list[list[_CTJob]] = []
    for split_index, (split, members) in enumerate(zip(CT_SPLITS, (sources[:-1], sources[-1:]))):
        mirrors = settings.mirror if split.folder == "ct_train" else (False,)
        combos = [(m, d, v) for m in mirrors for d in settings.doses for v in settings.view_divisors]
        names = split.names(len(members) * len(combos), np.random.default_rng([seed, split_index]))
        folder = out_dir / split.folder / split.image_dir
        jobs.append([])
        for s_index, source in enumerate(members):
            hu, spacing = _to_grid(source, settings.ct_size)
            seeds = np.random.SeedSequence([seed, split_index, s_index]).generate_state(len(combos))
            plan = tuple(
                (names[s_index * len(combos) + c], m, d, v, int(seeds[c])) for c, (m, d, v) in enumerate(combos)
            )
            jobs[-1].append(_CTJob(source.name, hu, spacing, folder, split.steps_per_unit, plan))
    return jobs


def _write_ct_labels(split: _Split, out_dir: Path, records: list[dict]) -> Path:
    """Write the labels JSON and the degradation record of one split; drop stale images; return its folder."""
    records = sorted(records, key=lambda r: r["name"])
    root = out_dir / split.folder
    atomic_write_json(root / split.labels, {r["name"]: r["score"] for r in records})
    atomic_write_json(root / "degradations.json", records)
    _remove_stale(root / split.image_dir, split.suffix, {r["name"] for r in records})
    return root


def _run_jobs(jobs: list[_CTJob], workers: int, natural: Callable[[], Any] | None) -> list[list[dict]]:
    """Run the CT jobs (in worker processes when ``workers > 1``) and ``natural`` here meanwhile; keep job order."""
    if workers <= 1:
        if natural is not None:
            natural()
        return [_run_ct_job(job) for job in jobs]
    with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
        futures = [pool.submit(_run_ct_job, job) for job in jobs]
        if natural is not None:
            natural()
        return [future.result() for future in futures]


def build_ct_sets(
    out_dir: str | Path,
    seed: int = 0,
    settings: DemoSettings = DEFAULT_SETTINGS,
    natural: Callable[[], Any] | None = None,
) -> dict[str, Path]:
    """Write ``ct_train/`` and ``ct_test/`` in the LDCTIQAC layout.

    Args:
        out_dir: demo folder.
        seed: seed of the noise and of the file-name shuffle.
        settings: what to generate.
        natural: optional work to run in this process while the worker processes simulate (the natural set).

    Returns:
        ``{"ct_train": folder, "ct_test": folder}`` (the folders that hold the labels JSON).
    """
    out_dir = Path(out_dir)
    per_split = _ct_jobs(load_ct_sources(), settings, out_dir, seed)
    results = _run_jobs([job for split_jobs in per_split for job in split_jobs], settings.workers, natural)
    folders, start = {}, 0
    for split, split_jobs in zip(CT_SPLITS, per_split):
        records = [record for batch in results[start : start + len(split_jobs)] for record in batch]
        folders[split.folder] = _write_ct_labels(split, out_dir, records)
        start += len(split_jobs)
    return folders


# --------------------------------------------------------------------------------------------- whole build


def _remove_stale(folder: Path, suffix: str, keep: set[str]) -> None:
    """Delete images with ``suffix`` in ``folder`` left over from an earlier, different build."""
    for path in folder.glob(f"*{suffix}"):
        if path.is_file() and path.name not in keep:
            path.unlink()


def build_demo_data(
    out_dir: str | Path, seed: int = 0, quick: bool = False, settings: DemoSettings | None = None
) -> dict[str, Any]:
    """Build the natural and CT demo sets under ``out_dir``.

    Args:
        out_dir: destination folder (created; files of an earlier build are replaced).
        seed: seed of every random choice; the same seed gives the same files.
        quick: small, fast build (128x128, few images) for tests.
        settings: explicit settings, overriding ``quick``.

    Returns:
        ``{"natural_csv": Path, "ct_train": Path, "ct_test": Path, "counts": {...}, "seconds": float}``.
    """
    settings = settings or (QUICK_SETTINGS if quick else DEFAULT_SETTINGS)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    natural: dict[str, Path] = {}

    def make_natural() -> None:
        natural["csv"] = build_natural_set(out_dir / "natural", seed, settings)

    ct = build_ct_sets(out_dir, seed, settings, natural=make_natural)
    counts = {
        "natural": _count_rows(natural["csv"]),
        "ct_train": len(json.loads((ct["ct_train"] / "train.json").read_text())),
        "ct_test": len(json.loads((ct["ct_test"] / "test.json").read_text())),
    }
    return {"natural_csv": natural["csv"], **ct, "counts": counts, "seconds": round(time.perf_counter() - start, 1)}


def _count_rows(csv_path: Path) -> int:
    return len(csv_path.read_text(encoding="utf-8").strip().splitlines()) - 1


def _score_summary(labels: dict[str, float]) -> str:
    values = np.array(list(labels.values()))
    hist = np.histogram(values, bins=[0, 0.5, 1.5, 2.5, 3.5, 4.01])[0]
    return f"mean {values.mean():.2f}, counts per score 0/1/2/3/4: {'/'.join(str(h) for h in hist)}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: build the demo sets and print what was written and how long it took."""
    parser = argparse.ArgumentParser(prog="python -m scripts.synthesis.demo_data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="small 128x128 build for tests")
    parser.add_argument("--workers", type=int, default=None, help="CT simulation processes (default 2; quick 1)")
    args = parser.parse_args(argv)
    settings = QUICK_SETTINGS if args.quick else DEFAULT_SETTINGS
    if args.workers is not None:
        settings = replace(settings, workers=max(1, args.workers))
    result = build_demo_data(args.out, seed=args.seed, settings=settings)
    counts = result["counts"]
    print(f"natural:  {counts['natural']} images, {result['natural_csv']}")
    for split, labels_name in (("ct_train", "train.json"), ("ct_test", "test.json")):
        labels = json.loads((result[split] / labels_name).read_text())
        print(f"{split}: {counts[split]} images, {result[split] / labels_name} ({_score_summary(labels)})")
    print(f"scores are synthetic (SSIM against the clean source mapped to 0-4); built in {result['seconds']} s")
    return result


if __name__ == "__main__":
    main()
