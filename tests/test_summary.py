"""scripts.clinical.summary: per-series groups in slice order, score statistics, flagged and worst slices, the
acquisition fields, and the series folder names."""

import json
import math

import numpy as np
import pytest

from scripts.clinical.summary import group_series, series_folder, summarize_series

# Skewed on purpose: the mean (1.75) is not the median (1.0); two values sit exactly on the threshold 1.0.
SCORES_A = [1.0, 4.5, 0.5, 1.0]
SCORES_B = [3.0, 3.8, 2.5]


def _rows():
    """Series A and B interleaved and each in reverse slice order, so neither grouping nor order is given."""
    rows = []
    for k in reversed(range(max(len(SCORES_A), len(SCORES_B)))):
        if k < len(SCORES_A):
            rows.append(_row("1.2.3.A", k, SCORES_A[k], ctdi=10.0 + k, description="Abdomen 3mm"))
        if k < len(SCORES_B):
            rows.append(_row("1.2.3.B", k, SCORES_B[k], ctdi=math.nan))
    return rows


def _row(series, k, score, ctdi=math.nan, description=""):
    return {
        "name": f"{series}.{k}",
        "series": series,
        "source": f"/data/exam_{series[-1]}/{k}.dcm",
        "frame": math.nan,
        "slice_index": float(k),
        "z": 2.5 * k,
        "instance_number": float(k + 1),
        "sop_instance_uid": f"{series}.{k}",
        "series_description": description,
        "kvp": 120.0,
        "ctdi_vol": ctdi,
        "exposure_mas": math.nan,
        "convolution_kernel": "B30f",
        "prediction": score,
    }


def test_groups_in_order_of_first_appearance_each_in_slice_order():
    groups = group_series(_rows())
    assert list(groups) == ["1.2.3.A", "1.2.3.B"]
    assert [r["prediction"] for r in groups["1.2.3.A"]] == SCORES_A
    assert [r["slice_index"] for r in groups["1.2.3.B"]] == [0.0, 1.0, 2.0]


def test_image_files_without_slice_index_keep_natural_name_order():
    rows = [{"series": "/f", "name": n, "prediction": 1.0} for n in ("x10.tif", "x2.tif", "x1.tif")]
    assert [r["name"] for r in group_series(rows)["/f"]] == ["x1.tif", "x2.tif", "x10.tif"]


@pytest.mark.parametrize("threshold", [2.0, 1.0, 2.75])
def test_statistics_flagged_and_worst_slices(threshold):
    a, b = summarize_series(_rows(), threshold=threshold, n_worst=2)
    assert np.mean(SCORES_A) != np.median(SCORES_A)
    for summary, scores in ((a, SCORES_A), (b, SCORES_B)):
        arr = np.asarray(scores)
        assert summary["n_slices"] == arr.size
        assert summary["mean"] == pytest.approx(arr.sum() / arr.size)
        assert summary["median"] == pytest.approx(np.median(arr))
        assert (summary["min"], summary["max"]) == (arr.min(), arr.max())
        assert summary["p10"] == pytest.approx(np.percentile(arr, 10))
        assert summary["n_below"] == int(np.count_nonzero(arr < threshold)) == len(summary["below"])
        assert [s["score"] for s in summary["below"]] == [s for s in scores if s < threshold]  # in slice order
        assert [s["score"] for s in summary["worst"]] == sorted(scores)[:2]
    assert a["worst"][0] == {
        "name": "1.2.3.A.2",
        "sop_instance_uid": "1.2.3.A.2",
        "instance_number": 3.0,
        "z": 5.0,
        "slice_index": 2.0,
        "source": "/data/exam_A/2.dcm",
        "frame": None,
        "score": 0.5,
    }


def test_acquisition_averages_dose_fields_and_leaves_absent_ones_out():
    a, b = summarize_series(_rows())
    assert a["acquisition"] == {
        "series_description": "Abdomen 3mm",
        "kvp": 120.0,
        "ctdi_vol": pytest.approx(np.mean([10.0, 11.0, 12.0, 13.0])),
        "convolution_kernel": "B30f",
    }
    assert "ctdi_vol" not in b["acquisition"] and "series_description" not in b["acquisition"]
    assert (a["title"], b["title"]) == ("Abdomen 3mm", "exam_B")  # B: no description, named by its folder
    json.dumps([a, b], allow_nan=False)  # JSON-ready: no NaN


def test_series_folders_are_readable_unique_and_safe():
    assert series_folder("1.2.3", "Abd/Pelvis 3.0 B30f").startswith("Abd_Pelvis_3.0_B30f_")
    assert series_folder("1.2.3", "same") != series_folder("1.2.4", "same")
    assert series_folder("/data/exam/ct_test").startswith("ct_test_")
    assert series_folder("..", "") not in ("..", ".") and "/" not in series_folder("/", "")
