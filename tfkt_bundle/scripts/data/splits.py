"""Seeded train/validation splits and k-fold, stratified by score, keyed by name (or group), order-independent.

Splits are keyed by file name (or group), never by row position, so they do not depend on file order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from scripts.utils.listing import name_list

__all__ = ["group_key_of", "split_train_val", "kfold", "make_split"]


def group_key_of(items: Sequence[Mapping]) -> str | None:
    """``"group"`` when every item names its source picture (KADID-10k, a CSV with a group column), else None.

    Splits keep a group on one side, so that distortions of one picture never sit on both sides of a split.
    """
    return "group" if items and all("group" in item for item in items) else None


def _units(items: Sequence[Mapping], group_key: str | None) -> list[tuple[str, float, list[int]]]:
    """Split units sorted by key: ``(key, mean label, item indices)``; a unit is an item or a whole group."""
    if not items:
        raise ValueError("cannot split an empty item list")
    key_name = group_key or "name"
    members: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        if key_name not in item or "label" not in item:
            raise ValueError(f"item {index} lacks {key_name!r} or 'label' (keys: {sorted(item)})")
        members[str(item[key_name])].append(index)
    if group_key is None:
        dups = [k for k, idx in members.items() if len(idx) > 1]
        if dups:
            raise ValueError(f"splits are keyed by name, but {len(dups)} names repeat: {name_list(dups)}")
    units = [(k, float(np.mean([float(items[i]["label"]) for i in idx])), idx) for k, idx in members.items()]
    return sorted(units, key=lambda unit: unit[0])


def _score_bins(units: Sequence[tuple[str, float, list[int]]], n_bins: int) -> list[list[int]]:
    """Equal-count score-quantile bins of unit positions; ties broken by key so that ranks are order-free."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    ranked = sorted(range(len(units)), key=lambda u: (units[u][1], units[u][0]))
    bins: list[list[int]] = [[] for _ in range(int(n_bins))]
    for rank, unit in enumerate(ranked):
        bins[rank * int(n_bins) // len(units)].append(unit)
    return [b for b in bins if b]


def _largest_remainder(sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` across bins in proportion to ``sizes`` (largest-remainder rounding)."""
    exact = [total * s / sum(sizes) for s in sizes]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda b: (-(exact[b] - counts[b]), b))
    for b in order[: total - sum(counts)]:
        counts[b] += 1
    return counts


def _collect(items: Sequence[dict], units: Sequence[tuple[str, float, list[int]]], chosen: Iterable[int]) -> list:
    picked = [items[i] for u in chosen for i in units[u][2]]
    return sorted(picked, key=lambda item: str(item.get("name", "")))


def split_train_val(
    items: Sequence[dict], val_fraction: float = 0.1, seed: int = 0, n_bins: int = 5, group_key: str | None = None
) -> tuple[list[dict], list[dict]]:
    """Seeded train/validation split, stratified by score quantile, keyed by name (or group), order-independent.

    Args:
        items: data dicts with ``name`` and ``label``.
        val_fraction: share of units (items, or groups with ``group_key``) sent to validation, in (0, 1).
        seed: random seed; the same seed and items give the same split whatever their order.
        n_bins: number of equal-count score bins to stratify over (a group scores its mean label).
        group_key: item key whose equal values must stay on one side (e.g. ``"group"`` for KADID-10k).

    Returns:
        ``(train, val)`` item lists sorted by name; both non-empty.
    """
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    units = _units(items, group_key)
    if len(units) < 2:
        raise ValueError(f"need at least 2 {'groups' if group_key else 'items'} to split, got {len(units)}")
    n_val = min(max(round(val_fraction * len(units)), 1), len(units) - 1)
    bins = _score_bins(units, n_bins)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for members, count in zip(bins, _largest_remainder([len(b) for b in bins], n_val)):
        val.extend(members[j] for j in rng.permutation(len(members))[:count])
    val_set = set(val)
    train = [u for u in range(len(units)) if u not in val_set]
    return _collect(items, units, train), _collect(items, units, val)


def kfold(
    items: Sequence[dict], n_folds: int = 5, fold: int = 0, seed: int = 0, n_bins: int = 5, group_key: str | None = None
) -> tuple[list[dict], list[dict]]:
    """Seeded, score-stratified k-fold split keyed by name (or group); the folds partition the data exactly.

    Args:
        items: data dicts with ``name`` and ``label``.
        n_folds: number of folds, at least 2 and at most the number of units.
        fold: which fold is the validation side, ``0 <= fold < n_folds``.
        seed: random seed; every ``fold`` of one seed comes from the same assignment.
        n_bins: number of equal-count score bins to stratify over.
        group_key: item key whose equal values must stay in one fold.

    Returns:
        ``(train, val)`` item lists sorted by name.
    """
    if int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if int(fold) != fold or not 0 <= fold < n_folds:
        raise ValueError(f"fold must be an integer in [0, {int(n_folds) - 1}], got {fold!r}")
    units = _units(items, group_key)
    if len(units) < n_folds:
        raise ValueError(
            f"{n_folds} folds need at least {n_folds} {'groups' if group_key else 'items'}, got {len(units)}"
        )
    rng = np.random.default_rng(seed)
    # Dealing shuffled bins round-robin gives every fold an equal share of each score bin.
    dealt = [b[j] for b in _score_bins(units, n_bins) for j in rng.permutation(len(b))]
    val = [u for pos, u in enumerate(dealt) if pos % n_folds == fold]
    train = [u for pos, u in enumerate(dealt) if pos % n_folds != fold]
    return _collect(items, units, train), _collect(items, units, val)


def make_split(
    items: Sequence[dict],
    val_fraction: float = 0.1,
    n_folds: int | None = None,
    fold: int = 0,
    seed: int = 0,
    group_key: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """One entry for configs: fold ``fold`` of a k-fold split when ``n_folds`` is set, else a hold-out.

    The hold-out keeps ``val_fraction`` of the data for validation (the published recipe: 900/100).
    """
    if n_folds:
        return kfold(items, n_folds=n_folds, fold=fold, seed=seed, group_key=group_key)
    return split_train_val(items, val_fraction=val_fraction, seed=seed, group_key=group_key)
