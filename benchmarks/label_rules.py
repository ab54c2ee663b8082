"""Check the full-reference label rules on natural images and on a built CT training set (prints, asserts nothing).

Natural side: every picture of ``scripts.synthesis.natural_images.PICTURES`` at 256x256 (the training set's size)
through every distortion type at its five levels. Per type, the signed Spearman correlation between level and score
within each picture, averaged over pictures (-1 = the score falls with every level), for the SSIM rule and the
GMSD x texture rule, and the share of pictures where the strongest level scores below the mildest. The demo's six
types are marked. Human opinion is not involved: this checks that the rule orders known severities of distortions
that KADID-10k readers did rate, the check a new CT label rule must pass on images whose ordering is not in doubt.

CT side (``--ct-set``, a folder built by ``python -m scripts.synthesis.training_sets``): the mean label and its
spread per degradation, and per denoiser how often the aggressive strength scores below the mild one on the same
slice.

Held-out side (``--heldout``, the accuracy benchmark's cache): how each rule itself ranks the held-out families'
same-slice pairs by severity, against the stored slice as reference (what ``benchmarks/heldout.py`` labels with).
Evaluation data: this only reports, nothing is chosen on it.

    python benchmarks/label_rules.py [--ct-set /data/release/ct] [--heldout tfkt_bundle/eval/accuracy_benchmark]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from scipy.stats import spearmanr

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tfkt_bundle"))
SHARED_SERIES = REPO_ROOT.parent / "shared" / "data" / "ct_series_abdomen"

from scripts.ctio.window import apply_hu_window  # noqa: E402
from scripts.synthesis import natural_images as natural  # noqa: E402
from scripts.synthesis.labels import ct_masks, full_reference_scores  # noqa: E402


def natural_table(size: int) -> str:
    """Per distortion type and rule: mean within-picture Spearman(level, score) and the share strongest < mildest."""
    rho: dict[tuple[str, str], list[float]] = defaultdict(list)
    drops: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for p_index, name in enumerate(natural.PICTURES):
        clean = natural.square_u8(natural.load_picture(name), size)
        for d_index, (distortion, (func, values)) in enumerate(natural.DISTORTIONS.items()):
            images = [func(clean, v, np.random.default_rng([0, p_index, d_index, i])) for i, v in enumerate(values)]
            for rule in ("ssim", "gmsd_texture"):
                scores = [full_reference_scores(clean / 255.0, im / 255.0, rule)["score"] for im in images]
                rho[distortion, rule].append(spearmanr(range(5), scores).statistic if np.ptp(scores) else 0.0)
                drops[distortion, rule].append(scores[-1] < scores[0])
    lines = [
        f"Natural side: {len(natural.PICTURES)} pictures at {size}x{size}, 5 levels per type (* = a demo type)",
        "| distortion | SSIM rule: Spearman(level, score) | strongest < mildest | GMSD x texture: Spearman | "
        "strongest < mildest |",
        "|---|---|---|---|---|",
    ]
    for distortion in natural.DISTORTIONS:
        mark = "*" if distortion in natural.DEMO_DISTORTIONS else ""
        cells = [
            f"{np.mean(rho[distortion, rule]):+.2f} | {np.mean(drops[distortion, rule]):.0%}"
            for rule in ("ssim", "gmsd_texture")
        ]
        lines.append(f"| {distortion}{mark} | {' | '.join(cells)} |")
    for rule in ("ssim", "gmsd_texture"):
        every = [r for (d, r_name), values in rho.items() if r_name == rule for r in values]
        lines.append(f"mean over types and pictures, {rule}: {np.mean(every):+.3f}")
    return "\n".join(lines)


def ct_table(ct_set: Path) -> str:
    """Mean and spread of the label per degradation of a built CT set, and per denoiser how often, on one slice, its
    aggressive strength scores below its mild one and below the scan it denoised."""
    records = json.loads((ct_set / "degradations.json").read_text())
    groups: dict[tuple, list[float]] = defaultdict(list)
    per_slice: dict[tuple, float] = {}
    for r in records:
        key = (r["family"], r["kernel"], r["dose"], r["n_views"], r.get("denoiser", ""), r.get("strength", ""))
        groups[key].append(r["score"])
        per_slice[(r["pending"].rsplit("_", 1)[0], *key)] = r["score"]
    lines = [
        f"CT side: {ct_set} ({len(records)} images)",
        "| family | kernel | dose | views | denoiser | strength | mean label | SD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(groups, key=str):
        values = groups[key]
        lines.append("| " + " | ".join(str(k) for k in key) + f" | {np.mean(values):.2f} | {np.std(values):.2f} |")
    lines += ["", "| denoiser | dose | aggressive < mild | aggressive < undenoised scan |", "|---|---|---|---|"]
    slices = sorted({k[0] for k in per_slice})
    denoised = sorted({(k[5], k[3], k[4]) for k in per_slice if k[1] == "denoised"})
    for name, dose, views in sorted({(d, dose, v) for d, dose, v in denoised}):
        strengths = sorted({k[6] for k in per_slice if k[1] == "denoised" and k[5] == name})
        below_mild, below_scan = [], []
        for key in slices:
            mild = per_slice.get((key, "denoised", "ramp", dose, views, name, strengths[0]))
            strong = per_slice.get((key, "denoised", "ramp", dose, views, name, strengths[-1]))
            scan = per_slice.get((key, "dose", "ramp", dose, views, "", ""))
            if None not in (mild, strong, scan):
                below_mild.append(strong < mild)
                below_scan.append(strong < scan)
        lines.append(f"| {name} | {dose} | {np.mean(below_mild):.0%} | {np.mean(below_scan):.0%} |")
    return "\n".join(lines)


def heldout_table(work: Path, series_dir: Path) -> str:
    """Share of same-slice pairs of each held-out family that each rule ranks by severity (ties count as wrong)."""
    from heldout import build_heldout, spaced_series_slices

    root = build_heldout(work, series_dir)
    records = json.loads((root / "degradations.json").read_text())
    n_slices = len({r["slice"] for r in records})
    references = {i: apply_hu_window(hu) for i, hu, _ in spaced_series_slices(series_dir, n_slices)}
    masks = {i: ct_masks(reference) for i, reference in references.items()}
    by_rule: dict[str, dict] = {}
    for rule in ("ssim", "gmsd_texture"):
        scores = {
            r["name"]: full_reference_scores(
                references[r["slice"]], tifffile.imread(root / r["name"]), rule, masks[r["slice"]]
            )["score"]
            for r in records
        }
        by_rule[rule] = _pair_shares(records, scores)
    lines = [f"Held-out side: {root}", "| family | pairs | SSIM rule | GMSD x texture rule |", "|---|---|---|---|"]
    for family, (pairs, share) in by_rule["ssim"].items():
        lines.append(f"| {family} | {pairs} | {share:.2f} | {by_rule['gmsd_texture'][family][1]:.2f} |")
    return "\n".join(lines)


def _pair_shares(records: list[dict], scores: dict[str, float]) -> dict[str, tuple[int, float]]:
    members: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        for family, severity in r["families"].items():
            members[family][r["slice"]][severity] = scores[r["name"]]
    shares = {}
    for family, slices in members.items():
        right = [
            a_score > b_score
            for per in slices.values()
            for a, a_score in per.items()
            for b, b_score in per.items()
            if a < b
        ]
        shares[family] = (len(right), float(np.mean(right)))
    return shares


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-set", type=Path, default=None, help="a CT set built by scripts.synthesis.training_sets")
    parser.add_argument("--heldout", type=Path, default=None, help="the accuracy benchmark's work folder")
    parser.add_argument("--series", type=Path, default=SHARED_SERIES, help="the held-out set's source series")
    parser.add_argument("--size", type=int, default=256, help="side of the natural pictures (default 256)")
    args = parser.parse_args(argv)
    print(natural_table(args.size))
    if args.ct_set is not None:
        print()
        print(ct_table(args.ct_set))
    if args.heldout is not None:
        print()
        print(heldout_table(args.heldout.resolve(), args.series.resolve()))


if __name__ == "__main__":
    main()
