"""Tests for scripts.data.splits: seeded, stratified, grouped, order-independent hold-out and k-fold splits."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from scripts.data import splits as ds


def _synthetic(n: int = 200, n_groups: int = 0) -> list[dict]:
    rng = np.random.default_rng(123)
    labels = np.round(rng.uniform(0, 4, n) / 0.2) * 0.2  # the LDCTIQAC 0.2 grid, with many ties
    items = [{"name": f"{i:04d}.tif", "image": f"/d/{i:04d}.tif", "label": float(v)} for i, v in enumerate(labels)]
    if n_groups:
        for i, item in enumerate(items):
            item["group"] = f"ref{i % n_groups:02d}"
    return items


def _bin_of(items: list[dict], n_bins: int = 5) -> dict[str, int]:
    ranked = sorted(items, key=lambda i: (i["label"], i["name"]))
    return {item["name"]: r * n_bins // len(items) for r, item in enumerate(ranked)}


def test_split_disjoint_covering_sized() -> None:
    items = _synthetic()
    train, val = ds.split_train_val(items, val_fraction=0.1, seed=0)
    names_t, names_v = {i["name"] for i in train}, {i["name"] for i in val}
    assert len(val) == 20 and len(train) == 180
    assert not names_t & names_v and names_t | names_v == {i["name"] for i in items}
    assert [i["name"] for i in val] == sorted(names_v)


def test_split_stratified() -> None:
    items = _synthetic()
    bins = _bin_of(items)
    train, val = ds.split_train_val(items, val_fraction=0.2, seed=3)
    assert Counter(bins[i["name"]] for i in val) == dict.fromkeys(range(5), 8)
    assert Counter(bins[i["name"]] for i in train) == dict.fromkeys(range(5), 32)
    assert abs(np.mean([i["label"] for i in val]) - np.mean([i["label"] for i in items])) < 0.15


def test_split_reproducible_seeded_order_free() -> None:
    items = _synthetic()
    _, val0 = ds.split_train_val(items, seed=0)
    assert ds.split_train_val(items, seed=0)[1] == val0
    assert {i["name"] for i in ds.split_train_val(items, seed=1)[1]} != {i["name"] for i in val0}
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert ds.split_train_val(shuffled, seed=0)[1] == val0


def test_split_groups_stay_together() -> None:
    items = _synthetic(n=250, n_groups=25)
    train, val = ds.split_train_val(items, val_fraction=0.2, seed=0, group_key="group")
    groups_t, groups_v = {i["group"] for i in train}, {i["group"] for i in val}
    assert not groups_t & groups_v and len(groups_v) == 5 and len(val) == 50
    shuffled = list(reversed(items))
    assert ds.split_train_val(shuffled, val_fraction=0.2, seed=0, group_key="group")[1] == val


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "0.1", None])
def test_split_bad_fraction(fraction: object) -> None:
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        ds.split_train_val(_synthetic(10), val_fraction=fraction)


def test_split_input_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        ds.split_train_val([])
    with pytest.raises(ValueError, match="at least 2"):
        ds.split_train_val(_synthetic(1))
    items = _synthetic(5)
    items[1]["name"] = items[0]["name"]
    with pytest.raises(ValueError, match=r"1 names repeat: 0000\.tif"):
        ds.split_train_val(items)
    with pytest.raises(ValueError, match="lacks 'group'"):
        ds.split_train_val(_synthetic(5), group_key="group")
    with pytest.raises(ValueError, match="n_bins"):
        ds.split_train_val(_synthetic(5), n_bins=0)


def test_split_tiny_sets_keep_both_sides() -> None:
    train, val = ds.split_train_val(_synthetic(3), val_fraction=0.01)
    assert len(val) == 1 and len(train) == 2
    train, val = ds.split_train_val(_synthetic(3), val_fraction=0.99)
    assert len(val) == 2 and len(train) == 1


def test_kfold_partitions_and_stratifies() -> None:
    items = _synthetic()
    bins = _bin_of(items)
    vals = [ds.kfold(items, n_folds=5, fold=f, seed=4)[1] for f in range(5)]
    all_val = [i["name"] for v in vals for i in v]
    assert sorted(all_val) == sorted(i["name"] for i in items) and len(set(all_val)) == len(items)
    for f, val in enumerate(vals):
        train = ds.kfold(items, n_folds=5, fold=f, seed=4)[0]
        assert {i["name"] for i in train} == {i["name"] for i in items} - {i["name"] for i in val}
        assert len(val) == 40
        assert Counter(bins[i["name"]] for i in val) == dict.fromkeys(range(5), 8)


def test_kfold_seeded_order_free_grouped() -> None:
    items = _synthetic(n=120, n_groups=12)
    val = ds.kfold(items, n_folds=3, fold=1, seed=0, group_key="group")[1]
    assert ds.kfold(list(reversed(items)), n_folds=3, fold=1, seed=0, group_key="group")[1] == val
    assert ds.kfold(items, n_folds=3, fold=1, seed=9, group_key="group")[1] != val
    folds = [{i["group"] for i in ds.kfold(items, n_folds=3, fold=f, group_key="group")[1]} for f in range(3)]
    assert sum(len(g) for g in folds) == 12 and len(set().union(*folds)) == 12


@pytest.mark.parametrize(
    ("n_folds", "fold", "message"),
    [
        (1, 0, "n_folds must be an integer >= 2"),
        (5, 5, r"fold must be an integer in \[0, 4\]"),
        (5, -1, r"fold must be an integer in \[0, 4\]"),
        (5, 1.5, "fold must be an integer"),
        (11, 0, "11 folds need at least 11 items, got 10"),
    ],
)
def test_kfold_bad_arguments(n_folds: int, fold: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ds.kfold(_synthetic(10), n_folds=n_folds, fold=fold)
