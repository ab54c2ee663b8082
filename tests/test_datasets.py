"""Tests for scripts.data.datasets: readers in each real layout, score mappings and mismatches."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image

from scripts.data import datasets as ds
from scripts.data.datasets import DatasetMismatchError

# --------------------------------------------------------------------------------------------- fixtures/helpers


def _tif(path: Path, value: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.full((4, 4), value, dtype=np.float32))
    return path


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((3, 3, 3), dtype=np.uint8)).save(path)
    return path


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def ldct_train(tmp_path: Path) -> Path:
    root = tmp_path / "LDCTIQAG2023_train"
    scores = {"0002.tif": 2.8, "0000.tif": 0.0, "0001.tif": 4.0, "0003.tif": 1.4}
    for i, name in enumerate(scores):
        _tif(root / "image" / name, value=i / 10)
    (root / "train.json").write_text(json.dumps(scores))
    return root


@pytest.fixture
def ldct_test(tmp_path: Path) -> Path:
    root = tmp_path / "LDCTIQAG2023_test"
    scores = {"test001.tiff": 1 / 6, "test000.tiff": 3.5}
    for name in scores:
        _tif(root / name)
    (root / "test.json").write_text(json.dumps(scores))
    return root


@pytest.fixture
def kadid(tmp_path: Path) -> Path:
    root = tmp_path / "kadid10k"
    rows = ["I02_01_01.png,I02.png,5.0,0.1", "I01_01_01.png,I01.png,4.57,0.2", "I01_01_02.png,I01.png,1.0,0.3"]
    _write_csv(root / "dmos.csv", "dist_img,ref_img,dmos,var", rows)
    for row in rows:
        _img(root / "images" / row.split(",")[0])
    _img(root / "images" / "I01.png")  # the release keeps reference images in the same folder, unscored
    return root


def _koniq(tmp_path: Path, folder: str = "1024x768") -> Path:
    root = tmp_path / "koniq10k"
    header = "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore"
    rows = ["826373.jpg,0,0,10,70,20,100,4.1,0.5,77.38", "10004473376.jpg,0,10,80,10,0,100,3.0,0.4,50.0"]
    _write_csv(root / "koniq10k_scores_and_distributions.csv", header, rows)
    for row in rows:
        _img(root / folder / row.split(",")[0])
    return root


@pytest.fixture
def spaq(tmp_path: Path) -> Path:
    root = tmp_path / "spaq"
    rows = ["00002.jpg,75.0,1,2", "00001.jpg,12.5,3,4"]
    _write_csv(root / "Annotations" / "MOS and Image attribute scores.csv", "Image name,MOS,Brightness,Noisiness", rows)
    for row in rows:
        _img(root / "TestImage" / row.split(",")[0])
    return root


def _mat_names(names: list[str]) -> np.ndarray:
    # MATLAB cell array N x 1 of char rows, as in the release's AllImages_release.
    cells = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cells[i, 0] = name
    return cells


@pytest.fixture
def livec(tmp_path: Path) -> Path:
    root = tmp_path / "ChallengeDB_release"
    # Training images deliberately not in the first rows: they must be found by name, not by position.
    names = ["10.bmp", "t1.bmp", "100.bmp", "t7.bmp", "1000.JPG"]
    mos = [50.0, 60.0, 92.43, 10.0, 3.42]
    (root / "Data").mkdir(parents=True)
    scipy.io.savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": _mat_names(names)})
    scipy.io.savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    for name in names:
        sub = "trainingImages" if name.startswith("t") else ""
        _img(root / "Images" / sub / name)
    return root


# --------------------------------------------------------------------------------------------- LDCTIQAC


def test_ldctiqac_train_layout(ldct_train: Path) -> None:
    items = ds.read_ldctiqac(ldct_train)
    assert [i["name"] for i in items] == ["0000.tif", "0001.tif", "0002.tif", "0003.tif"]
    assert [i["label"] for i in items] == [0.0, 4.0, 2.8, 1.4]
    assert all(set(i) == {"image", "label", "name"} for i in items)
    for item in items:
        assert Path(item["image"]).is_absolute()
        assert item["image"] == str((ldct_train / "image" / item["name"]).resolve())


def test_ldctiqac_test_layout(ldct_test: Path) -> None:
    items = ds.read_ldctiqac(ldct_test)
    assert [(i["name"], i["label"]) for i in items] == [("test000.tiff", 3.5), ("test001.tiff", 1 / 6)]
    assert Path(items[0]["image"]).parent == ldct_test.resolve()


def test_ldctiqac_scores_json_and_explicit_labels(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    _tif(images / "a.tif")
    _tif(images / "b.tiff")
    labels = tmp_path / "elsewhere" / "my_labels.json"
    labels.parent.mkdir()
    labels.write_text(json.dumps({"b.tiff": 2, "a.tif": 1.2}))
    items = ds.read_ldctiqac(images, labels=labels)
    assert [(i["name"], i["label"]) for i in items] == [("a.tif", 1.2), ("b.tiff", 2.0)]
    (images / "scores.json").write_text(json.dumps({"a.tif": 3.0, "b.tiff": 0.4}))
    assert [i["label"] for i in ds.read_ldctiqac(images)] == [3.0, 0.4]


def test_ldctiqac_missing_scored_file(ldct_train: Path, caplog: pytest.LogCaptureFixture) -> None:
    (ldct_train / "image" / "0002.tif").unlink()
    with pytest.raises(DatasetMismatchError, match=r"1 missing image file\(s\): 0002\.tif") as err:
        ds.read_ldctiqac(ldct_train)
    assert "\n" not in str(err.value) and "strict=False" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="scripts.datasets"):
        items = ds.read_ldctiqac(ldct_train, strict=False)
    assert [i["name"] for i in items] == ["0000.tif", "0001.tif", "0003.tif"]
    assert any("skipping 0002.tif" in r.getMessage() and "not found" in r.getMessage() for r in caplog.records)


def test_ldctiqac_unscored_image(ldct_train: Path, caplog: pytest.LogCaptureFixture) -> None:
    _tif(ldct_train / "image" / "0999.tif")
    with pytest.raises(DatasetMismatchError, match=r"1 unscored image\(s\): 0999\.tif"):
        ds.read_ldctiqac(ldct_train)
    with caplog.at_level(logging.WARNING, logger="scripts.datasets"):
        items = ds.read_ldctiqac(ldct_train, strict=False)
    assert len(items) == 4 and "0999.tif" not in {i["name"] for i in items}
    assert any("skipping 0999.tif" in r.getMessage() and "no score" in r.getMessage() for r in caplog.records)


def test_ldctiqac_many_mismatches_listed_briefly(tmp_path: Path) -> None:
    scores = {f"{i:04d}.tif": 2.0 for i in range(15)}
    (tmp_path / "image").mkdir()
    (tmp_path / "train.json").write_text(json.dumps(scores))
    _tif(tmp_path / "image" / "0000.tif")
    with pytest.raises(DatasetMismatchError) as err:
        ds.read_ldctiqac(tmp_path)
    message = str(err.value)
    assert "14 missing image file(s)" in message and "(+4 more)" in message and "15 scored entries" in message
    assert "0010.tif" in message and "0011.tif" not in message and "\n" not in message


@pytest.mark.parametrize("bad", [4.2, -0.1, "3", None, True, float("nan")])
def test_ldctiqac_invalid_label(ldct_train: Path, bad: object) -> None:
    scores = json.loads((ldct_train / "train.json").read_text())
    scores["0001.tif"] = bad
    (ldct_train / "train.json").write_text(json.dumps(scores))
    with pytest.raises(DatasetMismatchError, match=r"invalid score\(s\): 0001\.tif"):
        ds.read_ldctiqac(ldct_train)
    assert "0001.tif" not in {i["name"] for i in ds.read_ldctiqac(ldct_train, strict=False)}


def test_ldctiqac_label_file_errors(tmp_path: Path) -> None:
    _tif(tmp_path / "a.tif")
    with pytest.raises(FileNotFoundError, match="train.json, test.json, scores.json"):
        ds.read_ldctiqac(tmp_path)
    (tmp_path / "train.json").write_text(json.dumps({"a.tif": 1.0}))
    (tmp_path / "test.json").write_text(json.dumps({"a.tif": 1.0}))
    with pytest.raises(ValueError, match="several label files"):
        ds.read_ldctiqac(tmp_path)
    (tmp_path / "test.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold an object"):
        ds.read_ldctiqac(tmp_path, labels=tmp_path / "test.json")


def test_ldctiqac_nothing_usable_fails_even_non_strict(ldct_train: Path) -> None:
    for path in (ldct_train / "image").iterdir():
        path.unlink()
    with pytest.raises(DatasetMismatchError, match="no usable items"):
        ds.read_ldctiqac(ldct_train, strict=False)


def test_shared_ldctiqac_samples(shared_ldctiqac_samples: Path) -> None:
    items = ds.read_ldctiqac(shared_ldctiqac_samples)
    scores = json.loads((shared_ldctiqac_samples / "scores.json").read_text())
    assert len(items) == 10
    assert {i["name"]: i["label"] for i in items} == scores
    assert [i["name"] for i in items] == sorted(scores)
    for item in items:
        image = tifffile.imread(item["image"])
        assert image.dtype == np.float32 and image.shape == (512, 512)
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


# --------------------------------------------------------------------------------------------- natural-image IQA


def test_kadid10k(kadid: Path) -> None:
    items = ds.read_kadid10k(kadid)
    assert [i["name"] for i in items] == ["I01_01_01.png", "I01_01_02.png", "I02_01_01.png"]
    assert [i["mos"] for i in items] == [4.57, 1.0, 5.0]
    assert [i["label"] for i in items] == pytest.approx([3.57, 0.0, 4.0], abs=1e-12)
    assert [i["group"] for i in items] == ["I01.png", "I01.png", "I02.png"]
    assert {i["dataset"] for i in items} == {"kadid10k"}
    assert items[0]["image"] == str((kadid / "images" / "I01_01_01.png").resolve())


def test_kadid10k_missing_image(kadid: Path, caplog: pytest.LogCaptureFixture) -> None:
    (kadid / "images" / "I02_01_01.png").unlink()
    with pytest.raises(DatasetMismatchError, match=r"1 missing image file\(s\): I02_01_01\.png"):
        ds.read_kadid10k(kadid)
    with caplog.at_level(logging.WARNING, logger="scripts.datasets"):
        items = ds.read_kadid10k(kadid, strict=False)
    assert [i["name"] for i in items] == ["I01_01_01.png", "I01_01_02.png"]
    assert any("skipping I02_01_01.png" in r.getMessage() for r in caplog.records)


def test_kadid10k_wrong_column(kadid: Path) -> None:
    _write_csv(kadid / "dmos.csv", "dist_img,ref_img,mos,var", ["I01_01_01.png,I01.png,4.0,0.1"])
    with pytest.raises(ValueError, match=r"expected \['dist_img', 'ref_img', 'dmos'\], found \['dist_img'.*'mos'") as e:
        ds.read_kadid10k(kadid)
    assert "\n" not in str(e.value)


def test_out_of_range_and_non_numeric_scores(kadid: Path) -> None:
    rows = ["I01_01_01.png,I01.png,5.5,0", "I01_01_02.png,I01.png,abc,0", "I02_01_01.png,I02.png,5.0000000001,0"]
    _write_csv(kadid / "dmos.csv", "dist_img,ref_img,dmos,var", rows)
    with pytest.raises(DatasetMismatchError, match=r"2 invalid score\(s\): I01_01_01\.png, I01_01_02\.png"):
        ds.read_kadid10k(kadid)
    items = ds.read_kadid10k(kadid, strict=False)
    assert [(i["name"], i["label"]) for i in items] == [("I02_01_01.png", 4.0)]  # round-off is clipped, not lost


def test_duplicate_entries(kadid: Path) -> None:
    rows = ["I01_01_01.png,I01.png,4.0,0", "I01_01_01.png,I01.png,2.0,0"]
    _write_csv(kadid / "dmos.csv", "dist_img,ref_img,dmos,var", rows)
    with pytest.raises(DatasetMismatchError, match=r"1 duplicate entry\(s\): I01_01_01\.png"):
        ds.read_kadid10k(kadid)
    assert [i["mos"] for i in ds.read_kadid10k(kadid, strict=False)] == [4.0]


def test_koniq10k_mos_and_zscore(tmp_path: Path) -> None:
    root = _koniq(tmp_path)
    items = ds.read_koniq10k(root)
    assert [i["name"] for i in items] == ["10004473376.jpg", "826373.jpg"]
    assert [i["label"] for i in items] == pytest.approx([2.0, 3.1], abs=1e-12)
    zitems = ds.read_koniq10k(root, score="MOS_zscore")
    assert [i["label"] for i in zitems] == pytest.approx([2.0, 3.0952], abs=1e-12)
    assert [i["mos"] for i in zitems] == [50.0, 77.38]
    assert Path(items[0]["image"]).parent.name == "1024x768"
    with pytest.raises(ValueError, match=r"score must be one of \['MOS', 'MOS_zscore'\]"):
        ds.read_koniq10k(root, score="SD")


def test_koniq10k_image_folders(tmp_path: Path) -> None:
    root = _koniq(tmp_path, folder="512x384")
    assert Path(ds.read_koniq10k(root)[0]["image"]).parent.name == "512x384"
    (root / "512x384").rename(root / "small")
    with pytest.raises(FileNotFoundError, match="1024x768.*512x384.*image_dir"):
        ds.read_koniq10k(root)
    assert len(ds.read_koniq10k(root, image_dir=root / "small")) == 2


def test_koniq10k_wrong_column(tmp_path: Path) -> None:
    root = tmp_path / "k"
    _write_csv(root / "koniq10k_scores_and_distributions.csv", "image,MOS", ["a.jpg,3"])
    _img(root / "1024x768" / "a.jpg")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['image_name'\].*found \['image', 'MOS'\]"):
        ds.read_koniq10k(root)


def test_spaq_csv(spaq: Path) -> None:
    items = ds.read_spaq(spaq)
    assert [(i["name"], i["label"], i["mos"]) for i in items] == [("00001.jpg", 0.5, 12.5), ("00002.jpg", 3.0, 75.0)]
    assert {i["dataset"] for i in items} == {"spaq"}
    assert "group" not in items[0]


def test_spaq_explicit_table_and_folder(tmp_path: Path) -> None:
    table = _write_csv(tmp_path / "scores.csv", "Image name,MOS", ["x.png,100"])
    _img(tmp_path / "resized" / "x.png")
    items = ds.read_spaq(tmp_path, table=table, image_dir=tmp_path / "resized")
    assert [(i["name"], i["label"]) for i in items] == [("x.png", 4.0)]


def test_spaq_xlsx_needs_openpyxl(spaq: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ds, "_module_available", lambda name: name != "openpyxl")
    xlsx = spaq / "Annotations" / "MOS and Image attribute scores.xlsx"
    xlsx.write_bytes(b"PK\x03\x04")
    with pytest.raises(ImportError, match="needs the 'openpyxl' package") as err:
        ds.read_spaq(spaq, table=xlsx)
    assert "\n" not in str(err.value)


def test_spaq_no_table(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no score table found.*Annotations.*table="):
        ds.read_spaq(tmp_path)


def test_livec_mat(livec: Path) -> None:
    items = ds.read_livec(livec)
    assert [i["name"] for i in items] == ["10.bmp", "100.bmp", "1000.JPG"]
    assert [i["label"] for i in items] == pytest.approx([2.0, 3.6972, 0.1368], abs=1e-12)
    assert [i["mos"] for i in items] == [50.0, 92.43, 3.42]
    assert items[0]["image"] == str((livec / "Images" / "10.bmp").resolve())


def test_livec_training_images_by_name(livec: Path) -> None:
    items = {i["name"]: i for i in ds.read_livec(livec, include_training_images=True)}
    assert sorted(items) == ["10.bmp", "100.bmp", "1000.JPG", "t1.bmp", "t7.bmp"]
    assert items["t1.bmp"]["mos"] == 60.0 and items["t7.bmp"]["mos"] == 10.0
    assert Path(items["t7.bmp"]["image"]).parent.name == "trainingImages"


def test_livec_mat_variable_and_length_checks(livec: Path) -> None:
    scipy.io.savemat(livec / "Data" / "AllMOS_release.mat", {"AllMOS": np.array([[1.0]])})
    with pytest.raises(ValueError, match=r"expected \['AllMOS_release'\], found \['AllMOS'\]"):
        ds.read_livec(livec)
    scipy.io.savemat(livec / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([[1.0, 2.0]])})
    with pytest.raises(ValueError, match="lists 5 images but AllMOS_release has 2 scores"):
        ds.read_livec(livec)


def test_livec_csv(livec: Path) -> None:
    csv = _write_csv(livec / "livec.csv", "image,mos", ["t1.bmp,60", "100.bmp,25", "10.bmp,0"])
    items = ds.read_livec(livec, csv=csv)
    assert [(i["name"], i["label"]) for i in items] == [("10.bmp", 0.0), ("100.bmp", 1.0)]


def test_generic_csv(tmp_path: Path) -> None:
    absolute = _img(tmp_path / "other" / "abs.png")
    _img(tmp_path / "data" / "sub" / "rel.png")
    csv = _write_csv(tmp_path / "data" / "list.csv", "path,quality,src", ["sub/rel.png,2,A", f"{absolute},10,B"])
    items = ds.read_csv_dataset(
        csv,
        image_col="path",
        score_col="quality",
        group_col="src",
        score_range=(0, 10),
        higher_is_better=False,
        dataset="mine",
    )
    by_group = {i["group"]: i for i in items}
    assert by_group["A"]["label"] == pytest.approx(3.2, abs=1e-12) and by_group["B"]["label"] == 0.0
    assert by_group["A"]["name"] == "sub/rel.png"
    assert by_group["A"]["image"] == str((tmp_path / "data" / "sub" / "rel.png").resolve())
    assert by_group["B"]["image"] == str(absolute.resolve())
    assert {i["dataset"] for i in items} == {"mine"}
    up = ds.read_csv_dataset(csv, image_col="path", score_col="quality", score_range=(0, 10), higher_is_better=True)
    assert sorted(i["label"] for i in up) == pytest.approx([0.8, 4.0], abs=1e-12)


def test_generic_csv_checks(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "list.csv", "image,score", ["a.png,3"])
    with pytest.raises(DatasetMismatchError, match=r"missing image file\(s\): a\.png"):
        ds.read_csv_dataset(csv, score_range=(1, 5), higher_is_better=True)
    with pytest.raises(ValueError, match=r"expected \['image', 'mos'\], found \['image', 'score'\]"):
        ds.read_csv_dataset(csv, score_col="mos", score_range=(1, 5), higher_is_better=True)
    with pytest.raises(ValueError, match="hi > lo"):
        ds.read_csv_dataset(csv, score_range=(5, 1), higher_is_better=True)
    with pytest.raises(TypeError):
        ds.read_csv_dataset(csv)  # range and direction must be declared
    with pytest.raises(ValueError, match="needs the path of the CSV file"):
        ds.read_csv_dataset(tmp_path, score_range=(1, 5), higher_is_better=True)


def test_score_mapping_table() -> None:
    table = ds.score_mapping_table()
    assert "| kadid10k | dmos | 1-5 | higher is better | label = dmos - 1 |" in table
    assert "| koniq10k_zscore | MOS_zscore | 0-100 | higher is better | label = MOS_zscore / 25 |" in table
    assert "| spaq | MOS | 0-100 |" in table and "| livec |" in table and "| csv |" in table
    lower = ds.ScoreMapping("x", "s", (0.0, 8.0), False)
    assert lower.formula == "label = (8 - s) / 2" and lower.to_ct(2.0) == 3.0


def test_dispatcher(kadid: Path, spaq: Path, livec: Path, ldct_train: Path, tmp_path: Path) -> None:
    assert ds.read_iqa_dataset("kadid10k", kadid) == ds.read_kadid10k(kadid)
    assert ds.read_iqa_dataset("SPAQ", spaq) == ds.read_spaq(spaq)
    assert ds.read_iqa_dataset("livec", livec) == ds.read_livec(livec)
    assert ds.read_iqa_dataset("ldctiqac", ldct_train) == ds.read_ldctiqac(ldct_train)
    assert len(ds.read_iqa_dataset("koniq10k", _koniq(tmp_path), score="MOS_zscore")) == 2
    csv = _write_csv(tmp_path / "x.csv", "image,score", ["x.png,1"])
    _img(tmp_path / "x.png")
    assert ds.read_iqa_dataset("csv", csv, score_range=(0, 1), higher_is_better=True)[0]["label"] == 4.0


def test_dispatcher_unknown_kind() -> None:
    with pytest.raises(
        ValueError,
        match=r"valid kinds: ldctiqac, kadid10k, koniq10k, spaq, livec, csv; "
        r"did you mean 'kadid10k'\?",
    ):
        ds.read_iqa_dataset("kadid-10k", "/nowhere")
    with pytest.raises(ValueError, match="unknown dataset kind 'imagenet'") as err:
        ds.read_iqa_dataset("imagenet", "/nowhere")
    assert "did you mean" not in str(err.value)
