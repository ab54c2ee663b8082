"""scripts.clinical.compare: pairing the slices of two versions of one exam and the paired score comparison."""

import csv
import json
import math
import random

import numpy as np
import pytest

from scripts.clinical.compare import compare_scores, format_comparison, pair_slices, write_comparison

NAN = math.nan


def _row(series, name, prediction, z=NAN, instance_number=NAN, slice_index=0.0):
    return {
        "prediction": prediction,
        "series": series,
        "name": name,
        "z": z,
        "instance_number": instance_number,
        "slice_index": slice_index,
        "sop_instance_uid": "",
    }


def _side(prefix, scores, z=None, instance_numbers=None, slice_indices=None):
    n = len(scores)
    z = [NAN] * n if z is None else z
    instance_numbers = [NAN] * n if instance_numbers is None else instance_numbers
    slice_indices = list(range(n)) if slice_indices is None else slice_indices
    return [
        _row(f"1.2.{prefix}", f"{prefix}{k}", scores[k], z[k], instance_numbers[k], float(slice_indices[k]))
        for k in range(n)
    ]


def _names(pairing):
    return [(b["name"], a["name"]) for b, a in pairing.pairs]


def test_pairs_by_position_with_shuffled_rows_and_float_noise_on_z():
    z = [-40.0 + 2.5 * k for k in range(10)]
    noise = [0.1, -0.1, 0.05, -0.2, 0.0, 0.15, -0.05, 0.2, -0.15, 0.1]  # well inside a quarter spacing (0.625 mm)
    before = _side("b", [2.0] * 10, z=z)
    after = _side("a", [3.0] * 10, z=[zk + e for zk, e in zip(z, noise)])
    random.Random(1).shuffle(before)
    random.Random(2).shuffle(after)
    pairing = pair_slices(before, after)
    assert (pairing.method, pairing.unpaired_before, pairing.unpaired_after) == ("position", 0, 0)
    assert _names(pairing) == [(f"b{k}", f"a{k}") for k in range(10)]
    assert [b["z"] for b, _ in pairing.pairs] == z  # sorted along z


def test_partial_overlap_leaves_the_rest_unpaired():
    before = _side("b", [2.0] * 10, z=[float(k) for k in range(10)])
    after = _side("a", [2.0] * 8, z=[float(k) for k in range(6, 14)])
    pairing = pair_slices(before, after)
    assert _names(pairing) == [("b6", "a0"), ("b7", "a1"), ("b8", "a2"), ("b9", "a3")]
    assert (pairing.unpaired_before, pairing.unpaired_after) == (6, 4)


def test_nearest_candidate_is_claimed_first():
    before = _side("b", [1.0, 1.0], z=[0.0, 1.0])
    after = _side("a", [1.0], z=[0.9])
    pairing = pair_slices(before, after, tolerance_mm=1.5)  # both before slices are within tolerance of a0
    assert _names(pairing) == [("b1", "a0")]
    assert (pairing.unpaired_before, pairing.unpaired_after) == (1, 0)


def test_default_tolerance_is_a_quarter_of_the_smaller_spacing():
    before = _side("b", [1.0] * 3, z=[0.0, 4.0, 8.0])  # spacing 4 mm; after's 1 mm gives the tolerance, 0.25 mm
    after_within = _side("a", [1.0] * 9, z=[k + 0.2 for k in range(9)])
    assert _names(pair_slices(before, after_within)) == [("b0", "a0"), ("b1", "a4"), ("b2", "a8")]
    with pytest.raises(ValueError, match=r"no common positions: .*\(tolerance 0.25 mm\)"):
        pair_slices(before, _side("a", [1.0] * 9, z=[k + 0.3 for k in range(9)]))


def test_single_slice_side_needs_near_exact_position():
    before = _side("b", [1.0] * 3, z=[0.0, 5.0, 10.0])
    assert _names(pair_slices(before, _side("a", [1.0], z=[5.0005]))) == [("b1", "a0")]
    with pytest.raises(ValueError, match="no common positions"):
        pair_slices(before, _side("a", [1.0], z=[5.01]))


def test_no_common_positions_is_an_error_that_gives_both_ranges():
    before = _side("b", [1.0] * 5, z=[0.0, 1.0, 2.0, 3.0, 4.0])
    after = _side("a", [1.0] * 3, z=[100.0, 101.0, 102.0])
    with pytest.raises(ValueError, match=r"no common positions: before z 0 to 4 mm, after z 100 to 102 mm"):
        pair_slices(before, after)


def test_pairs_by_instance_number_when_positions_are_missing():
    # slice_index runs the other way: pairing by it instead would reverse every pair.
    before = _side("b", [1.0, 2.0, 3.0], instance_numbers=[3.0, 1.0, 2.0], slice_indices=[0, 2, 1])
    after = _side("a", [1.0, 2.0, 3.0], instance_numbers=[12.0, 13.0, 11.0], slice_indices=[1, 0, 2])
    random.Random(3).shuffle(after)
    pairing = pair_slices(before, after)
    assert (pairing.method, pairing.unpaired_before, pairing.unpaired_after) == ("order", 0, 0)
    assert _names(pairing) == [("b1", "a2"), ("b2", "a0"), ("b0", "a1")]


def test_pairs_by_slice_index_when_instance_numbers_are_missing():
    before = _side("b", [1.0] * 3, instance_numbers=[1.0, NAN, 3.0], slice_indices=[2, 0, 1])
    after = _side("a", [1.0] * 3, z=[0.0, 1.0, 2.0], slice_indices=[1, 2, 0])  # z on one side only: by order
    pairing = pair_slices(before, after)
    assert pairing.method == "order"
    assert _names(pairing) == [("b1", "a2"), ("b2", "a0"), ("b0", "a1")]


def test_unequal_counts_cannot_be_paired_by_order():
    before = _side("b", [1.0] * 3, z=[0.0, 1.0, 2.0])
    after = _side("a", [1.0] * 2)
    with pytest.raises(ValueError, match=r"before has 3 slices, after 2; .* missing on after$"):
        pair_slices(before, after)


def test_each_side_must_be_one_series():
    before = _side("b", [1.0] * 2, z=[0.0, 1.0]) + _side("c", [1.0], z=[2.0])
    after = _side("a", [1.0] * 3, z=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="before has 2 series, after 1: each side must be one series"):
        pair_slices(before, after)
    with pytest.raises(ValueError, match="after has no slices"):
        pair_slices(after, [])


def test_mean_gain_and_shares_equal_hand_computed_values():
    before = _side("b", [1.0, 2.0, 3.0, 2.0, 0.5], z=[0.0, 1.0, 2.0, 3.0, 4.0])
    after = _side("a", [2.0, 2.0, 2.5, 3.5, 1.5], z=[0.0, 1.0, 2.0, 3.0, 4.0])
    result = compare_scores(pair_slices(before, after), n_boot=200)
    # differences: +1.0, 0.0, -0.5, +1.5, +1.0
    assert result["n_pairs"] == 5
    assert result["mean_before"] == pytest.approx(1.7)
    assert result["mean_after"] == pytest.approx(2.3)
    assert result["mean_gain"] == pytest.approx(0.6)
    assert result["median_gain"] == pytest.approx(1.0)
    assert (result["share_improved"], result["share_worse"]) == (pytest.approx(0.6), pytest.approx(0.2))


def _pairing_with_gains(gains, base=2.0):
    z = [float(k) for k in range(len(gains))]
    return pair_slices(_side("b", [base] * len(gains), z=z), _side("a", [base + g for g in gains], z=z))


def test_bootstrap_ci_contains_the_mean_and_is_deterministic_for_a_seed():
    gains = list(np.random.default_rng(7).normal(0.3, 0.5, size=40))
    pairing = _pairing_with_gains(gains)
    first, again = compare_scores(pairing, seed=4), compare_scores(pairing, seed=4)
    assert first == again
    assert first["gain_ci_low"] < first["mean_gain"] < first["gain_ci_high"]
    assert compare_scores(pairing, seed=5)["gain_ci_low"] != first["gain_ci_low"]
    narrower = compare_scores(pairing, seed=4, ci=0.5)
    assert first["gain_ci_low"] < narrower["gain_ci_low"] < narrower["gain_ci_high"] < first["gain_ci_high"]


@pytest.mark.parametrize(
    "gains, verdict",
    [([0.5] * 20, "after is better"), ([-0.25] * 20, "after is worse"), ([1.0, -1.0] * 20, "no clear difference")],
)
def test_verdict_follows_the_ci(gains, verdict):
    result = compare_scores(_pairing_with_gains(gains))
    assert result["verdict"] == verdict
    if verdict == "no clear difference":
        assert result["gain_ci_low"] < 0.0 < result["gain_ci_high"]
        assert result["mean_gain"] == pytest.approx(0.0)
    else:  # a constant gain resamples to itself: the CI is that gain
        assert result["gain_ci_low"] == pytest.approx(gains[0]) == result["gain_ci_high"]


def test_write_comparison_writes_csv_json_and_png(tmp_path):
    before = _side("b", [1.0, 2.0, 3.0], z=[0.0, 2.0, 4.0])
    after = _side("a", [1.5, 1.0, 3.0], z=[4.0, 2.0, 0.0])
    pairing = pair_slices(before, after)
    result = compare_scores(pairing, n_boot=100)
    paths = write_comparison(tmp_path / "out", pairing, result)
    assert sorted(p.name for p in paths.values()) == ["comparison.csv", "comparison.json", "comparison.png"]
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["z"], r["before_name"], r["after_name"]) for r in rows] == [
        ("0.0", "b0", "a2"),
        ("2.0", "b1", "a1"),
        ("4.0", "b2", "a0"),
    ]
    assert [float(r["difference"]) for r in rows] == [2.0, -1.0, -1.5]
    assert json.loads(paths["json"].read_text()) == result
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths.values())


def test_write_comparison_by_order_uses_the_order_index(tmp_path):
    pairing = pair_slices(_side("b", [1.0, 2.0]), _side("a", [2.0, 2.5]))
    paths = write_comparison(tmp_path, pairing, compare_scores(pairing, n_boot=50))
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["order"], float(r["difference"])) for r in rows] == [("0.0", 1.0), ("1.0", 0.5)]


def test_format_comparison_states_counts_gain_and_verdict():
    text = format_comparison(compare_scores(_pairing_with_gains([0.5] * 4)))
    assert "4 slices paired by position (0 before and 0 after left unpaired)" in text
    assert "mean gain +0.500 [95% CI +0.500, +0.500]" in text
    assert text.splitlines()[-1] == "verdict: after is better"
