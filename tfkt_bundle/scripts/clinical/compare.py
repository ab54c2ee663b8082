"""Compare two versions of one CT exam slice by slice: is this reconstruction (or denoiser) better?

The two sides (``before``: e.g. filtered back-projection or the raw series; ``after``: e.g. iterative
reconstruction or the denoised series) are scored separately; ``pair_slices`` matches their slices, by table
position when both sides know it and by slice order otherwise, and ``compare_scores`` tests the paired gain with a
bootstrap over slices.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from scripts.utils.atomic import atomic_path, atomic_save_png, atomic_write_json
from scripts.utils.scores import SCORE_RANGE

__all__ = ["Pairing", "pair_slices", "compare_scores", "write_comparison", "format_comparison"]

CSV_FILENAME = "comparison.csv"
JSON_FILENAME = "comparison.json"
PLOT_FILENAME = "comparison.png"
MIN_TOLERANCE_MM = 1e-3
# Bootstrap resamples drawn per block: bounds memory at about this many indices whatever the exam size.
_BOOT_BLOCK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Pairing:
    """Slices of the two sides matched one-to-one.

    Attributes:
        method: "position" (matched by z) or "order" (matched by rank in each series).
        pairs: (before_row, after_row) tuples sorted along z, or along slice order.
        unpaired_before: before slices with no partner (always 0 by order).
        unpaired_after: after slices with no partner (always 0 by order).
    """

    method: str
    pairs: list[tuple[Mapping[str, Any], Mapping[str, Any]]]
    unpaired_before: int
    unpaired_after: int


# ----------------------------------------------------------------------------------------------------------------
# Pairing
# ----------------------------------------------------------------------------------------------------------------


def _num(value: Any) -> float:
    """A row's numeric field as float; absent, None and empty cells (rows read back from CSV) become NaN."""
    if value is None or value == "":
        return math.nan
    return float(value)


def _check_sides(before: list, after: list) -> None:
    for side, rows in (("before", before), ("after", after)):
        if not rows:
            raise ValueError(f"{side} has no slices: nothing to compare")
    counts = [len({str(row.get("series", "")) for row in rows}) for rows in (before, after)]
    if counts != [1, 1]:
        raise ValueError(
            f"before has {counts[0]} series, after {counts[1]}: each side must be one series (one reconstruction)"
        )


def _z(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array([_num(row.get("z")) for row in rows], dtype=np.float64)


def _spacing_tolerance(z: np.ndarray) -> float:
    positions = np.unique(z)
    if positions.size < 2:
        return MIN_TOLERANCE_MM
    return max(0.25 * float(np.median(np.diff(positions))), MIN_TOLERANCE_MM)


def _nearest_first(zb: np.ndarray, za: np.ndarray, tolerance: float) -> list[tuple[int, int]]:
    """One-to-one matches within ``tolerance``, closest candidates claimed first (ties by index, so deterministic)."""
    order = np.argsort(za, kind="stable")
    sorted_za = za[order]
    candidates = []
    for i, z in enumerate(zb):
        lo = np.searchsorted(sorted_za, z - tolerance, side="left")
        hi = np.searchsorted(sorted_za, z + tolerance, side="right")
        for j in order[lo:hi]:
            candidates.append((abs(float(za[j]) - float(z)), i, int(j)))
    matched, used_b, used_a = [], set(), set()
    for _, i, j in sorted(candidates):
        if i not in used_b and j not in used_a:
            matched.append((i, j))
            used_b.add(i)
            used_a.add(j)
    return matched


def _pair_by_position(before: list, after: list, tolerance_mm: float | None) -> Pairing:
    zb, za = _z(before), _z(after)
    tolerance = min(_spacing_tolerance(zb), _spacing_tolerance(za)) if tolerance_mm is None else float(tolerance_mm)
    matched = _nearest_first(zb, za, tolerance)
    if not matched:
        raise ValueError(
            f"before and after cover no common positions: before z {zb.min():g} to {zb.max():g} mm, "
            f"after z {za.min():g} to {za.max():g} mm (tolerance {tolerance:g} mm)"
        )
    matched.sort(key=lambda ij: (zb[ij[0]], za[ij[1]]))
    pairs = [(before[i], after[j]) for i, j in matched]
    return Pairing("position", pairs, len(before) - len(pairs), len(after) - len(pairs))


def _in_order(rows: list) -> list:
    """Rows sorted by instance number when every row has one, else by position in the sorted series."""
    key = "instance_number" if all(math.isfinite(_num(row.get("instance_number"))) for row in rows) else "slice_index"

    def rank(row: Mapping[str, Any]) -> tuple[float, str]:
        value = _num(row.get(key))
        return (value if math.isfinite(value) else math.inf, str(row.get("name", "")))

    return sorted(rows, key=rank)


def _pair_by_order(before: list, after: list) -> Pairing:
    if len(before) != len(after):
        missing = [side for side, rows in (("before", before), ("after", after)) if not np.isfinite(_z(rows)).all()]
        raise ValueError(
            f"cannot pair by order: before has {len(before)} slices, after {len(after)}; "
            f"positions (ImagePositionPatient) are missing on {' and '.join(missing)}"
        )
    return Pairing("order", list(zip(_in_order(before), _in_order(after))), 0, 0)


def pair_slices(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]], tolerance_mm: float | None = None
) -> Pairing:
    """Match the slices of two versions of one exam.

    By position when every slice on both sides has a finite ``z``: slices whose z agree within the tolerance are
    paired one-to-one, nearest first, and the rest counted as unpaired. Otherwise by order (``instance_number``
    when every slice of a side has one, else ``slice_index``), which needs equal slice counts.

    Args:
        before: scored rows of the reference version (``prediction``, ``series``, ``name``, ``z``,
            ``instance_number``, ``slice_index``), in any order.
        after: scored rows of the version under test, same keys.
        tolerance_mm: largest z difference of a pair; default a quarter of the smaller median slice spacing of the
            two sides, at least 1e-3 mm (1e-3 mm when a side has a single slice).

    Returns:
        The pairing, its pairs sorted along z (or order).

    Raises:
        ValueError: a side is empty or holds more than one series, the sides share no position, or (by order)
            their slice counts differ.
    """
    before, after = list(before), list(after)
    _check_sides(before, after)
    if np.isfinite(_z(before)).all() and np.isfinite(_z(after)).all():
        return _pair_by_position(before, after, tolerance_mm)
    return _pair_by_order(before, after)


# ----------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------


def _scores(pairing: Pairing) -> tuple[np.ndarray, np.ndarray]:
    before = np.array([_num(b.get("prediction")) for b, _ in pairing.pairs], dtype=np.float64)
    after = np.array([_num(a.get("prediction")) for _, a in pairing.pairs], dtype=np.float64)
    if not (np.isfinite(before).all() and np.isfinite(after).all()):
        raise ValueError("a paired slice has no finite prediction: score both series completely before comparing")
    return before, after


def _bootstrap_means(diff: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    block = max(1, _BOOT_BLOCK_ELEMENTS // diff.size)
    means = [
        diff[rng.integers(0, diff.size, size=(min(block, n_boot - s), diff.size))].mean(axis=1)
        for s in range(0, n_boot, block)
    ]
    return np.concatenate(means)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "after is better"
    if high < 0:
        return "after is worse"
    return "no clear difference"


def compare_scores(pairing: Pairing, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> dict:
    """Paired comparison of the scores: mean gain (after - before) with a percentile bootstrap CI over pairs.

    Args:
        pairing: a ``pair_slices`` result.
        n_boot: bootstrap resamples (at least 1).
        seed: seed of ``numpy.random.default_rng``.
        ci: confidence level of the interval, in (0, 1).

    Returns:
        A JSON-ready dict: n_pairs, method, unpaired counts, mean scores, mean_gain with gain_ci_low/gain_ci_high,
        median_gain, share_improved/share_worse (slices whose score rose/fell), verdict, and ci_level, n_boot, seed.
    """
    if n_boot < 1 or not 0.0 < ci < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < ci < 1, got n_boot={n_boot}, ci={ci}")
    before, after = _scores(pairing)
    diff = after - before
    low, high = np.quantile(_bootstrap_means(diff, n_boot, seed), [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return {
        "n_pairs": int(diff.size),
        "method": pairing.method,
        "unpaired_before": int(pairing.unpaired_before),
        "unpaired_after": int(pairing.unpaired_after),
        "mean_before": float(before.mean()),
        "mean_after": float(after.mean()),
        "mean_gain": float(diff.mean()),
        "gain_ci_low": float(low),
        "gain_ci_high": float(high),
        "median_gain": float(np.median(diff)),
        "share_improved": float(np.mean(diff > 0)),
        "share_worse": float(np.mean(diff < 0)),
        "verdict": _verdict(float(low), float(high)),
        "ci_level": float(ci),
        "n_boot": int(n_boot),
        "seed": int(seed),
    }


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


def _axis(pairing: Pairing) -> tuple[str, list[float]]:
    if pairing.method == "position":
        return "z", [_num(b.get("z")) for b, _ in pairing.pairs]
    return "order", [float(k) for k in range(len(pairing.pairs))]


def _gain_text(result: Mapping[str, Any]) -> str:
    level = result.get("ci_level", 0.95)
    return (
        f"mean gain {result['mean_gain']:+.3f} [{level:.0%} CI {result['gain_ci_low']:+.3f}, "
        f"{result['gain_ci_high']:+.3f}]"
    )


def _write_csv(path: Path, pairing: Pairing) -> Path:
    axis, where = _axis(pairing)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([axis, "before_name", "after_name", "before", "after", "difference"])
            for x, (b, a) in zip(where, pairing.pairs):
                sb, sa = _num(b.get("prediction")), _num(a.get("prediction"))
                writer.writerow([x, b.get("name", ""), a.get("name", ""), sb, sa, sa - sb])
    return path


def _plot(path: Path, pairing: Pairing, result: Mapping[str, Any]) -> Path:
    axis, where = _axis(pairing)
    before, after = _scores(pairing)
    # The object API with the Agg canvas leaves pyplot's global state and the process-wide backend untouched.
    fig = Figure(figsize=(8.0, 4.5), dpi=120)
    ax = fig.add_subplot()
    ax.plot(where, before, "o-", markersize=3, linewidth=1, label=f"before (mean {result['mean_before']:.2f})")
    ax.plot(where, after, "o-", markersize=3, linewidth=1, label=f"after (mean {result['mean_after']:.2f})")
    ax.set_ylim(SCORE_RANGE[0] - 0.1, SCORE_RANGE[1] + 0.1)
    ax.set_xlabel("z (mm)" if axis == "z" else "slice order")
    ax.set_ylabel("predicted quality score")
    ax.set_title(f"{result['n_pairs']} paired slices: {result['verdict']}\n{_gain_text(result)}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_save_png(fig, path)


def write_comparison(out_dir: str | os.PathLike, pairing: Pairing, result: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``comparison.csv`` (one line per pair), ``comparison.json`` (``result``) and ``comparison.png`` (both
    score curves along z or slice order) into ``out_dir``, each atomically.

    Args:
        out_dir: output folder, created if needed.
        pairing: the ``pair_slices`` result.
        result: its ``compare_scores`` result.

    Returns:
        The written paths under the keys "csv", "json" and "png".
    """
    out_dir = Path(out_dir)
    return {
        "csv": _write_csv(out_dir / CSV_FILENAME, pairing),
        "json": atomic_write_json(out_dir / JSON_FILENAME, dict(result)),
        "png": _plot(out_dir / PLOT_FILENAME, pairing, result),
    }


def format_comparison(result: Mapping[str, Any]) -> str:
    """A few console lines: what was paired, mean scores and gain with its CI, shares improved/worse, verdict."""
    return "\n".join(
        [
            f"{result['n_pairs']} slices paired by {result['method']} ({result['unpaired_before']} before and "
            f"{result['unpaired_after']} after left unpaired)",
            f"mean score before {result['mean_before']:.3f}, after {result['mean_after']:.3f}; "
            f"{_gain_text(result)}, median gain {result['median_gain']:+.3f}",
            f"improved on {result['share_improved']:.0%} of slices, worse on {result['share_worse']:.0%}",
            f"verdict: {result['verdict']}",
        ]
    )
