"""Tests of scripts.synthesis.training_sets: the CT training set of the released weights (one pydicom-data slice)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from scripts.data.datasets import read_iqa_dataset, read_ldctiqac
from scripts.data.splits import group_key_of, make_split
from scripts.synthesis import training_sets as ts


@pytest.fixture(scope="module")
def source() -> ts.CTSlice:
    """The pydicom-data abdomen slice, its central 256x256 (the smallest slice the set takes)."""
    first = ts.find_ct_slices(None)[0]
    hu = first.hu[128:384, 128:384].copy()
    return ts.CTSlice("abdomen", "pydicom-data_abdomen", hu, first.spacing_mm, first.origin)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, source: ts.CTSlice) -> Path:
    out = tmp_path_factory.mktemp("release") / "ct"
    second = ts.CTSlice("abdomen_flipped", "pydicom-data_other", source.hu[:, ::-1].copy(), source.spacing_mm, "x")
    return ts.build_ct_set(out, [source, second], ts.QUICK_PLAN, seed=0, workers=1)


def _rows(folder: Path) -> list[dict]:
    with open(folder / "scores.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sources_are_found_and_small_slices_left_out(caplog):
    slices = ts.find_ct_slices(None)
    assert slices and all(min(s.hu.shape) >= ts.MIN_SIDE for s in slices)
    assert "CT_small.dcm" not in {s.origin for s in slices}  # 128x128
    assert "693_UNCR.dcm" not in {s.origin for s in slices}  # CQ500: non-commercial licence
    assert len({s.group for s in slices}) == len(slices)  # each pydicom-data slice is its own patient


def test_layout_reads_as_ldctiqac_and_as_a_grouped_csv(built: Path):
    per_slice = len(ts._conditions(ts.QUICK_PLAN))
    items = read_ldctiqac(built)
    assert len(items) == 2 * per_slice == 26
    grouped = read_iqa_dataset(
        "csv", built / "scores.csv", score_range=(0, 4), higher_is_better=True, group_col="group"
    )
    assert group_key_of(grouped) == "group" and {i["group"] for i in grouped} == {
        "pydicom-data_abdomen",
        "pydicom-data_other",
    }
    train, val = make_split(grouped, val_fraction=0.1, group_key="group", seed=0)
    assert {i["group"] for i in train}.isdisjoint({i["group"] for i in val})
    image = tifffile.imread(items[0]["image"])
    assert image.dtype == np.float32 and image.shape == (256, 256) and 0.0 <= image.min() <= image.max() <= 1.0
    assert sorted(json.loads((built / "train.json").read_text())) == sorted(p.name for p in (built / "image").iterdir())
    assert sorted(p.stat().st_ino for p in (built / "pending").iterdir()) == sorted(
        p.stat().st_ino for p in (built / "image").iterdir()
    )  # image/ links the slices' own files: nothing is stored twice


def test_labels_fall_with_dose_views_kernel_and_aggressive_denoising(built: Path):
    rows = [r for r in _rows(built) if r["group"] == "pydicom-data_abdomen"]

    def score(family: str, dose: float, denoiser: str = "", strength: str = "") -> float:
        (match,) = [
            r
            for r in rows
            if (r["family"], float(r["dose"]), r["denoiser"], r["strength"]) == (family, dose, denoiser, strength)
        ]
        return float(match["score"])

    full = score("dose", 1.0)
    assert full > 3.0
    assert score("dose", 0.1) < full - 0.8
    assert score("views", 1.0) < full  # 1/4 of the views: streaks
    assert score("kernel", 1.0) < full  # the smooth kernel loses texture
    for name, (_, strengths) in ts.DENOISERS.items():
        assert score("denoised", 0.1, name, str(strengths[-1])) < score("denoised", 0.1, name, str(strengths[0])), name
    assert {float(r["texture"]) > 0.9 for r in rows if r["family"] == "dose"} == {True}  # noise leaves texture


def test_names_are_shuffled_and_the_record_is_complete(built: Path):
    records = json.loads((built / "degradations.json").read_text())
    assert [r["name"] for r in records] == sorted(r["name"] for r in records)
    order = [(r["group"], r["pending"]) for r in records]
    assert order != sorted(order)  # name order reveals neither patient nor degradation
    assert {"dose", "n_views", "kernel", "family", "full_dose_i0", "seed", "ssim", "gmsd", "texture"} <= set(records[0])


def test_an_interrupted_build_resumes_and_other_settings_are_refused(tmp_path: Path, source: ts.CTSlice, monkeypatch):
    out = tmp_path / "ct"
    plan = ts.CTPlan(doses=(1.0,), view_doses=(), kernel_doses=(), denoise_doses=())
    ts.build_ct_set(out, [source], plan, workers=1)
    first = (out / "image" / "0000.tif").read_bytes()
    for path in (out / "image").iterdir():  # as if killed before the labels were written
        path.unlink()
    (out / "train.json").unlink()
    monkeypatch.setattr(ts, "_run_job", lambda job: pytest.fail("a finished slice was simulated again"))
    ts.build_ct_set(out, [source], plan, workers=1)
    assert (out / "image" / "0000.tif").read_bytes() == first
    with pytest.raises(ValueError, match="built with other settings"):
        ts.build_ct_set(out, [source], ts.QUICK_PLAN, workers=1)


def test_default_plan_covers_a_kernel_ladder_and_denoised_full_dose_scans():
    rows = ts._conditions(ts.DEFAULT_PLAN)
    assert len(rows) == 49
    kernels = {(r["kernel"], r["dose"]) for r in rows if r["family"] == "kernel"}
    assert kernels == {(k, d) for k in ("shepp-logan", "cosine", "hann") for d in (1.0, 0.25, 0.06)}
    assert {r["dose"] for r in rows if r["family"] == "denoised"} == {1.0, 0.25, 0.06}


def test_labels_fall_along_the_kernel_ladder(tmp_path: Path, source: ts.CTSlice):
    plan = ts.CTPlan(doses=(1.0,), view_doses=(), kernel_doses=(1.0,), denoise_doses=())
    rows = _rows(ts.build_ct_set(tmp_path / "ct", [source], plan, seed=0, workers=1))
    score = {r["kernel"]: float(r["score"]) for r in rows}
    assert score["ramp"] > score["cosine"] > score["hann"], score  # smoother kernels lose more texture
    assert score["shepp-logan"] > score["hann"], score
