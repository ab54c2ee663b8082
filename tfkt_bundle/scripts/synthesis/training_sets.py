"""The training sets of the released weights: natural pictures with KADID-like distortions, and real CT of several
patients degraded the ways the clinic degrades it, both labelled by the GMSD x texture rule
(:mod:`scripts.synthesis.labels`).

**The scores are synthetic**: a full-reference measure against the clean source, not a reader's opinion.

``natural/``: every picture of :data:`scripts.synthesis.natural_images.PICTURES` (21, from scikit-image, matplotlib
and scikit-learn) at 256x256, clean and with each of the 18 distortion types at 5 levels (``scores.csv``: image,
score, group = picture, distortion, level, ssim, gmsd, texture), for ``configs/pretrain.json``.

``ct/``: full-dose slices at their native matrix (no resampling: the noise grain is that of the scan), each one
source of 49 images:

- ``dose``: full-view sharp-kernel (ramp) scans at 1, 0.5, 0.25, 0.12, 0.06, 0.03 and 0.015 of full dose;
- ``views``: 1/2, 1/4 and 1/8 of the views at doses 1 and 0.25 (streaks);
- ``kernel``: reconstructions with three smoother FBP kernels, mildest first (Shepp-Logan, cosine and Hann-windowed
  ramp filters), at doses 1, 0.25 and 0.06 (less noise, less detail: a graded ladder of lost detail);
- ``denoised``: the 1-, 0.25- and 0.06-dose scans through a bilateral filter, non-local means and total variation, each
  at three strengths set relative to the scan's own noise (the noise baseline's estimate): mild, matched, aggressive.

Full dose is the flux that gives 15 HU soft-tissue noise, calibrated once per patient on its middle slice and held
for the patient's other slices, as a fixed tube current would. Labels: GMSD x texture of the windowed image against
the noiseless full-view reconstruction of the source slice (GMSD over the body, texture over soft tissue). Sources:
every CT series under ``--ct-sources`` (one patient per series) and the full-dose CT slices that ship with pydicom-
data (``scripts.synthesis.demo_data.CT_CANDIDATES``); slices smaller than 256 pixels a side are left out (logged),
since training takes 256x256 crops at native scale.
Never point ``--ct-sources`` at evaluation data.

Layout under ``<out>/ct``: ``image/NNNN.tif`` (float32, [0, 1], names shuffled), ``train.json`` (the LDCTIQAC
training layout), ``scores.csv`` (image, score, group = patient, and the degradation of each image: what
``configs/train.json`` reads with ``--dataset_kind csv`` to keep a patient on one side of the validation split),
``degradations.json``, and ``pending/`` + ``slices/<source>.json`` (each slice's images under their own names and its
records, written when the slice is done: a rebuild, interrupted or with other sources, simulates only new slices;
``image/`` holds hard links to them). Left out on purpose: :data:`EXCLUDED` (licence terms).

CLI: ``python -m scripts.synthesis.training_sets --out DIR --ct-sources DIR [--workers N] [--seed N] [--quick]``
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tifffile
from skimage.restoration import denoise_bilateral, denoise_nl_means, denoise_tv_chambolle

from scripts.ctio.dicom import find_dicom_series
from scripts.ctio.dicom_pixels import iter_series_slices
from scripts.ctio.noise import noise_sigma
from scripts.ctio.window import apply_hu_window
from scripts.synthesis.demo_data import DemoSettings, build_natural_set, load_ct_sources
from scripts.synthesis.labels import ct_masks, full_reference_scores
from scripts.synthesis.natural_images import DISTORTIONS, PICTURES
from scripts.synthesis.simulate import SimulatorConfig, SliceSimulator
from scripts.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["CTPlan", "DEFAULT_PLAN", "QUICK_PLAN", "NATURAL_SETTINGS", "CTSlice", "find_ct_slices", "build_ct_set"]

logger = logging.getLogger(__name__)

MIN_SIDE = 256  # training crops are 256x256 at native scale
# Sources whose terms would pass to weights trained on them: left out, with the reason logged.
EXCLUDED = {
    "693_UNCR.dcm": "a CQ500 slice (qure.ai, CC BY-NC-SA 4.0), whose non-commercial terms would bind the weights"
}

# Denoisers at three strengths, each a multiple of the scan's estimated noise std (window units).
DENOISERS = {
    "bilateral": (
        lambda image, k, sigma: denoise_bilateral(image, sigma_color=k * sigma, sigma_spatial=1.5),
        (1.0, 2.5, 5.0),
    ),
    "nlm": (
        lambda image, k, sigma: denoise_nl_means(image, h=k * sigma, sigma=sigma, patch_size=5, patch_distance=6),
        (0.6, 1.0, 2.0),
    ),
    "tv": (lambda image, k, sigma: denoise_tv_chambolle(image, weight=k * sigma), (0.5, 1.5, 5.0)),
}


@dataclass(frozen=True)
class CTPlan:
    """The degradations of each CT source slice (see the module docstring)."""

    doses: tuple[float, ...] = (1.0, 0.5, 0.25, 0.12, 0.06, 0.03, 0.015)
    view_doses: tuple[float, ...] = (1.0, 0.25)
    view_divisors: tuple[int, ...] = (2, 4, 8)
    kernels: tuple[str, ...] = ("shepp-logan", "cosine", "hann")
    kernel_doses: tuple[float, ...] = (1.0, 0.25, 0.06)
    denoise_doses: tuple[float, ...] = (1.0, 0.25, 0.06)
    denoisers: tuple[str, ...] = tuple(DENOISERS)
    target_noise_hu: float = 15.0


DEFAULT_PLAN = CTPlan()
QUICK_PLAN = CTPlan(
    doses=(1.0, 0.1),
    view_doses=(1.0,),
    view_divisors=(4,),
    kernels=("hann",),
    kernel_doses=(1.0,),
    denoise_doses=(0.1,),
)
NATURAL_SETTINGS = DemoSettings(natural_images=PICTURES, distortions=tuple(DISTORTIONS), label_rule="gmsd_texture")


@dataclass(frozen=True)
class CTSlice:
    """One full-dose source slice: HU, pixel spacing, its patient (group) and where it came from."""

    key: str
    group: str
    hu: np.ndarray
    spacing_mm: float
    origin: str


def _series_slices(root: Path) -> list[CTSlice]:
    slices = []
    for series in find_dicom_series(root):
        folder = Path(series.slices[0].path).parent
        group = re.sub(r"[^A-Za-z0-9_.-]", "_", str(folder.relative_to(root)) if folder != root else folder.name)
        for index, (hu, info) in enumerate(iter_series_slices(series)):
            spacing = float(info["pixel_spacing"][0]) if info.get("pixel_spacing") else 1.0
            slices.append(CTSlice(f"{group}_{index:03d}", group, np.maximum(hu, -1000.0), spacing, info["source"]))
    return slices


def find_ct_slices(ct_sources: str | Path | None, with_pydicom_data: bool = True) -> list[CTSlice]:
    """Every usable full-dose slice: the DICOM series under ``ct_sources`` and pydicom-data's CT slices."""
    slices = _series_slices(Path(ct_sources)) if ct_sources is not None else []
    if with_pydicom_data:
        for source in load_ct_sources():
            stem = source.name.removesuffix(".dcm")
            slices.append(CTSlice(stem, f"pydicom-data_{stem}", source.hu, source.spacing_mm, source.name))
    kept = []
    for item in slices:
        if item.origin in EXCLUDED:
            logger.info("CT source %s left out: %s", item.origin, EXCLUDED[item.origin])
        elif min(item.hu.shape) < MIN_SIDE:
            logger.info("CT source %s left out: %s is smaller than %d a side", item.origin, item.hu.shape, MIN_SIDE)
        else:
            kept.append(item)
    if not kept:
        raise RuntimeError(f"no CT slice of at least {MIN_SIDE}x{MIN_SIDE} found under {ct_sources}")
    return kept


def _conditions(plan: CTPlan) -> list[dict]:
    """Every image of one source: family, kernel, dose, view divisor, denoiser and its strength."""
    rows = [{"family": "dose", "kernel": "ramp", "dose": d, "divisor": 1} for d in plan.doses]
    rows += [
        {"family": "views", "kernel": "ramp", "dose": d, "divisor": v}
        for d in plan.view_doses
        for v in plan.view_divisors
    ]
    rows += [
        {"family": "kernel", "kernel": k, "dose": d, "divisor": 1} for k in plan.kernels for d in plan.kernel_doses
    ]
    rows += [
        {"family": "denoised", "kernel": "ramp", "dose": d, "divisor": 1, "denoiser": name, "strength": k}
        for d in plan.denoise_doses
        for name in plan.denoisers
        for k in DENOISERS[name][1]
    ]
    return rows


@dataclass(frozen=True)
class _Job:
    source: CTSlice
    i0: float
    seed: int
    plan: CTPlan
    out: Path


def _calibrated_i0(item: CTSlice, target_noise_hu: float) -> float:
    config = SimulatorConfig(target_noise_hu=target_noise_hu)
    return SliceSimulator(item.hu, item.spacing_mm, config).calibrate().i0


def _scan(sims: dict, row: dict, seed: int) -> np.ndarray:
    sim = sims[row["kernel"]]
    rng = np.random.default_rng([seed, int(row["dose"] * 1e4), row["divisor"]])
    return apply_hu_window(sim.simulate(row["dose"], sim.full_views // row["divisor"], rng))


def _run_job(job: _Job) -> list[dict]:
    """Simulate, label and write the images of one source slice (to ``<out>/pending/``); return their records."""
    hu = job.source.hu
    ramp = SliceSimulator(hu, job.source.spacing_mm, SimulatorConfig(full_dose_i0=job.i0, filter_name="ramp"))
    sims = {"ramp": ramp} | {k: ramp.with_filter(k) for k in job.plan.kernels}
    # The reference is the noiseless full-view sharp-kernel reconstruction, not the stored slice: the scanner's own
    # blur then cancels, and a full-dose scan differs from it by its noise alone (texture transfer about 1).
    reference = apply_hu_window(sims["ramp"].noiseless())
    masks = ct_masks(reference)
    scans: dict[float, np.ndarray] = {}
    records = []
    for index, row in enumerate(_conditions(job.plan)):
        if row["family"] == "denoised":
            if row["dose"] not in scans:
                scans[row["dose"]] = _scan(sims, {"kernel": "ramp", "dose": row["dose"], "divisor": 1}, job.seed)
            base = scans[row["dose"]]
            sigma = noise_sigma(base)
            image = DENOISERS[row["denoiser"]][0](base, row["strength"], sigma).astype(np.float32)
        else:
            image = _scan(sims, row, job.seed)
            if row["family"] == "dose":
                scans[row["dose"]] = image
        name = f"{job.source.key}_{index:02d}.tif"
        with atomic_path(job.out / "pending" / name) as tmp:
            tifffile.imwrite(tmp, np.clip(image, 0.0, 1.0).astype(np.float32))
        measures = full_reference_scores(reference, np.clip(image, 0.0, 1.0), "gmsd_texture", masks)
        records.append(
            {
                "pending": name,
                "source": job.source.origin,
                "group": job.source.group,
                **row,
                "n_views": sims[row["kernel"]].full_views // row["divisor"],
                "full_dose_i0": round(job.i0, 1),
                "seed": job.seed,
                **{k: round(v, 5) for k, v in measures.items()},
            }
        )
    atomic_write_json(job.out / "slices" / f"{job.source.key}.json", records)
    return records


def _jobs(slices: Sequence[CTSlice], plan: CTPlan, out: Path, seed: int) -> list[_Job]:
    """One job per slice not finished yet; the flux is calibrated on each patient's middle slice and reused for its
    other slices. Noise seeds follow the slice's place in ``slices``."""
    by_group: dict[str, list[CTSlice]] = {}
    for item in slices:
        by_group.setdefault(item.group, []).append(item)
    seeds = np.random.SeedSequence(seed).generate_state(len(slices))
    jobs, i0s = [], {}
    for index, item in enumerate(slices):
        if _finished(out, item.key) is not None:
            continue
        if item.group not in i0s:
            members = by_group[item.group]
            i0s[item.group] = _calibrated_i0(members[len(members) // 2], plan.target_noise_hu)
            logger.info("CT %s: full dose %.3g photons per bin and view", item.group, i0s[item.group])
        jobs.append(_Job(item, i0s[item.group], int(seeds[index]), plan, out))
    return jobs


def _finished(out: Path, key: str) -> list[dict] | None:
    path = out / "slices" / f"{key}.json"
    if not path.is_file():
        return None
    records = json.loads(path.read_text())
    return records if all((out / "pending" / r["pending"]).is_file() for r in records) else None


def _write_labels(out: Path, records: list[dict], seed: int) -> None:
    """Give the images shuffled names (name order reveals neither patient nor dose) and write the label files."""
    order = np.random.default_rng(seed).permutation(len(records))
    image_dir = out / "image"
    image_dir.mkdir(parents=True, exist_ok=True)
    for name_index, record in zip(order, records):
        record["name"] = f"{name_index:04d}.tif"
        target = image_dir / record["name"]
        target.unlink(missing_ok=True)
        os.link(out / "pending" / record["pending"], target)  # pending/ stays whole, so a rebuild reuses every slice
    keep = {r["name"] for r in records}
    for stale in image_dir.glob("*.tif"):
        if stale.name not in keep:
            stale.unlink()
    records.sort(key=lambda r: r["name"])
    atomic_write_json(out / "train.json", {r["name"]: r["score"] for r in records})
    atomic_write_json(out / "degradations.json", records)
    text = io.StringIO()
    columns = [
        "image",
        "score",
        "group",
        "family",
        "kernel",
        "dose",
        "n_views",
        "denoiser",
        "strength",
        "ssim",
        "gmsd",
        "texture",
    ]
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({**r, "image": f"image/{r['name']}"} for r in records)
    atomic_write_text(out / "scores.csv", text.getvalue())


def build_ct_set(
    out: str | Path, slices: Sequence[CTSlice], plan: CTPlan = DEFAULT_PLAN, seed: int = 0, workers: int = 2
) -> Path:
    """Write the CT training set (see the module docstring) and return its folder.

    Finished slices of an interrupted build with the same plan are kept; the label files are written last.
    """
    out = Path(out)
    settings = {"plan": asdict(plan), "seed": seed}
    settings_path = out / "settings.json"
    if settings_path.is_file() and json.loads(settings_path.read_text()) != json.loads(json.dumps(settings)):
        raise ValueError(f"{out} holds a CT set built with other settings; remove it or choose another --out")
    atomic_write_json(settings_path, settings)  # sources may change: each slice's images are its own
    todo = _jobs(slices, plan, out, seed)
    logger.info("CT set: %d slices, %d to simulate", len(slices), len(todo))
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(min(workers, len(todo))) as pool:
            list(pool.map(_run_job, todo))
    else:
        for job in todo:
            _run_job(job)
    records = [record for item in slices for record in _finished(out, item.key) or []]
    _write_labels(out, records, seed)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Command line: build ``<out>/natural`` and ``<out>/ct``; print counts and time."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.synthesis.training_sets", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument("--ct-sources", default=None, help="folder of full-dose CT series (training data only)")
    parser.add_argument("--workers", type=int, default=2, help="CT simulation processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="a few degradations and pictures, for tests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out, start = Path(args.out), time.perf_counter()
    natural = NATURAL_SETTINGS
    if args.quick:
        natural = replace(natural, natural_images=PICTURES[-3:], natural_levels=(1, 5), natural_size=128)
    csv_path = build_natural_set(out / "natural", args.seed, natural)
    print(f"natural: {len(csv_path.read_text().splitlines()) - 1} images, {csv_path}")
    slices = find_ct_slices(args.ct_sources)
    ct = build_ct_set(out / "ct", slices, QUICK_PLAN if args.quick else DEFAULT_PLAN, args.seed, max(1, args.workers))
    groups = sorted({s.group for s in slices})
    print(
        f"ct: {len(json.loads((ct / 'train.json').read_text()))} images of {len(slices)} slices, {len(groups)} patients"
    )
    print(f"built in {time.perf_counter() - start:.0f} s")
    return {"natural": csv_path, "ct": ct}


if __name__ == "__main__":
    main()
