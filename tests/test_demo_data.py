"""Tests of scripts.synthesis.demo_data (quick build): layouts, readers, score rules, determinism, clean re-runs."""

import csv
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from scripts.data.datasets import read_csv_dataset, read_ldctiqac
from scripts.synthesis.demo_data import QUICK_SETTINGS, build_ct_sets, build_demo_data, load_ct_sources, main


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_demo_data(tmp_path_factory.mktemp("demo"), seed=0, quick=True)


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _degradations(folder: Path) -> list[dict]:
    return json.loads((folder / "degradations.json").read_text())


def test_build_returns_paths_and_counts(demo: dict):
    assert demo["natural_csv"].name == "scores.csv" and demo["natural_csv"].is_file()
    assert (demo["ct_train"] / "train.json").is_file() and (demo["ct_test"] / "test.json").is_file()
    n_natural = len(QUICK_SETTINGS.natural_images) * (
        1 + len(QUICK_SETTINGS.distortions) * len(QUICK_SETTINGS.natural_levels)
    )
    n_per_source = len(QUICK_SETTINGS.doses) * len(QUICK_SETTINGS.view_divisors)
    n_train = 3 * n_per_source * len(QUICK_SETTINGS.mirror)
    assert demo["counts"] == {"natural": n_natural, "ct_train": n_train, "ct_test": n_per_source}
    assert demo["seconds"] > 0


def test_natural_csv_rows_match_png_files(demo: dict):
    rows = _csv_rows(demo["natural_csv"])
    folder = demo["natural_csv"].parent
    assert list(rows[0])[:2] == ["image", "score"]
    assert sorted(r["image"] for r in rows) == sorted(f"images/{p.name}" for p in (folder / "images").glob("*.png"))
    for row in rows[:: max(1, len(rows) // 10)]:
        image = Image.open(folder / row["image"])
        assert image.mode == "L" and image.size == (QUICK_SETTINGS.natural_size,) * 2
    items = read_csv_dataset(demo["natural_csv"], score_range=(0, 4), higher_is_better=True, group_col="group")
    assert len(items) == len(rows) and all(0.0 <= item["label"] <= 4.0 for item in items)


def test_natural_scores_clean_at_4_and_fall_with_distortion(demo: dict):
    rows = _csv_rows(demo["natural_csv"])
    by_type = defaultdict(list)
    for row in rows:
        assert 0.0 <= float(row["score"]) <= 4.0
        if row["distortion"] == "none":
            assert float(row["score"]) == 4.0 and float(row["ssim"]) == 1.0
        else:
            by_type[(row["group"], row["distortion"])].append((int(row["level"]), float(row["score"])))
    assert {d for _, d in by_type} == set(QUICK_SETTINGS.distortions)
    for key, levels in by_type.items():
        scores = [s for _, s in sorted(levels)]
        assert all(b <= a for a, b in zip(scores, scores[1:])), f"{key}: {scores}"
        assert scores[-1] < 4.0, f"{key}: the strongest level must lose quality"


@pytest.mark.parametrize("split, labels_name, steps", [("ct_train", "train.json", 5), ("ct_test", "test.json", 6)])
def test_ct_sets_read_as_ldctiqac(demo: dict, split: str, labels_name: str, steps: int):
    items = read_ldctiqac(demo[split])
    assert len(items) == demo["counts"][split]
    names = [item["name"] for item in items]
    if split == "ct_train":
        assert names[0] == "0000.tif" and (demo[split] / "image" / names[0]).is_file()
    else:
        assert names[0] == "test000.tiff" and (demo[split] / names[0]).is_file()
    for item in items:
        assert 0.0 <= item["label"] <= 4.0
        assert item["label"] * steps == pytest.approx(round(item["label"] * steps), abs=1e-9)
    for item in items[:4]:
        image = tifffile.imread(item["image"])
        assert image.dtype == np.float32 and image.shape == (QUICK_SETTINGS.ct_size,) * 2
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0.05


def test_ct_scores_fall_with_dose_for_the_same_source(demo: dict):
    for split in ("ct_train", "ct_test"):
        groups = defaultdict(list)
        for record in _degradations(demo[split]):
            groups[(record["source"], record["mirrored"], record["n_views"])].append((record["dose"], record["score"]))
        for key, pairs in groups.items():
            scores = [s for _, s in sorted(pairs, reverse=True)]
            assert all(b <= a for a, b in zip(scores, scores[1:])), f"{key}: {scores}"
            assert scores[-1] < scores[0], f"{key}: {scores}"
        # Fewer views at the same dose never score higher either.
        for (source, mirrored, views), pairs in groups.items():
            fewer = [k for k in groups if k[:2] == (source, mirrored) and k[2] < views]
            for other in fewer:
                assert all(dict(groups[other])[d] <= s for d, s in pairs)


def test_ct_train_and_test_sources_are_disjoint(demo: dict):
    train = {r["source"] for r in _degradations(demo["ct_train"])}
    test = {r["source"] for r in _degradations(demo["ct_test"])}
    assert len(train) == 3 and test == {"693_UNCR.dcm"}
    assert not train & test


def test_ct_sources_are_distinct_real_slices():
    sources = load_ct_sources()
    assert [s.name for s in sources] == [
        "explicit_VR-UN.dcm",
        "J2K_pixelrep_mismatch.dcm",
        "CT_small.dcm",
        "693_UNCR.dcm",
    ]
    for source in sources:
        assert source.hu.ndim == 2 and source.hu.min() >= -1000.0 and source.spacing_mm > 0
        assert np.percentile(source.hu, 99) > 100.0  # real anatomy with tissue and bone, not a blank frame


def test_cli_rerun_is_deterministic_and_removes_stale_files(demo: dict, tmp_path: Path, capsys):
    (tmp_path / "ct_train" / "image").mkdir(parents=True)
    (tmp_path / "ct_train" / "image" / "9999.tif").write_bytes(b"stale")
    (tmp_path / "natural" / "images").mkdir(parents=True)
    (tmp_path / "natural" / "images" / "old.png").write_bytes(b"stale")
    main(["--out", str(tmp_path), "--quick", "--seed", "0"])
    printed = capsys.readouterr().out
    assert "synthetic" in printed and "ct_train: 18 images" in printed
    assert not (tmp_path / "ct_train" / "image" / "9999.tif").exists()
    assert not (tmp_path / "natural" / "images" / "old.png").exists()
    read_ldctiqac(tmp_path / "ct_train")  # strict: an unscored stale image would raise
    for rel in ("ct_train/train.json", "ct_test/test.json", "ct_test/degradations.json", "natural/scores.csv"):
        assert (tmp_path / rel).read_text() == (demo["ct_train"].parent / rel).read_text(), rel
    first = tifffile.imread(demo["ct_train"] / "image" / "0003.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "ct_train" / "image" / "0003.tif"), first)


def test_worker_processes_give_the_same_files_and_other_seeds_do_not(tmp_path: Path):
    settings = replace(QUICK_SETTINGS, doses=(1.0, 0.06), view_divisors=(4,), mirror=(False, True))
    build_ct_sets(tmp_path / "one", seed=0, settings=settings)
    build_ct_sets(tmp_path / "two", seed=0, settings=replace(settings, workers=2))
    for rel in ("ct_train/train.json", "ct_test/test.json", "ct_train/degradations.json"):
        assert (tmp_path / "one" / rel).read_text() == (tmp_path / "two" / rel).read_text(), rel
    name = sorted(p.name for p in (tmp_path / "one" / "ct_train" / "image").glob("*.tif"))[5]
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "one" / "ct_train" / "image" / name),
        tifffile.imread(tmp_path / "two" / "ct_train" / "image" / name),
    )
    build_ct_sets(tmp_path / "three", seed=1, settings=settings)
    other = json.loads((tmp_path / "three" / "ct_train" / "degradations.json").read_text())
    same = json.loads((tmp_path / "one" / "ct_train" / "degradations.json").read_text())
    assert {r["seed"] for r in other}.isdisjoint({r["seed"] for r in same})
    assert [r["source"] for r in other] != [r["source"] for r in same]  # names are shuffled differently


def test_mirrored_training_images_share_anatomy_and_full_dose(tmp_path: Path):
    settings = replace(QUICK_SETTINGS, doses=(1.0,), view_divisors=(1,), mirror=(False, True))
    folders = build_ct_sets(tmp_path, seed=0, settings=settings)
    records = _degradations(folders["ct_train"])
    assert len(records) == 6 and {r["mirrored"] for r in records} == {False, True}
    assert all(r["source"] != "693_UNCR.dcm" for r in records)
    by_key = {(r["source"], r["mirrored"]): r for r in records}
    for source in {r["source"] for r in records}:
        stored, mirrored = by_key[(source, False)], by_key[(source, True)]
        assert stored["full_dose_i0"] == mirrored["full_dose_i0"]
        a = tifffile.imread(folders["ct_train"] / "image" / stored["name"])
        b = tifffile.imread(folders["ct_train"] / "image" / mirrored["name"])
        assert np.corrcoef(a[:, ::-1].ravel(), b.ravel())[0, 1] > 0.95
    assert len(_degradations(folders["ct_test"])) == 1
