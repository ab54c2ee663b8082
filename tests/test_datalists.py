"""Tests for scripts.data.datalists: atomic JSON datalists with sections and relative paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.data import datalists as ds


def test_datalist_round_trip(tmp_path: Path) -> None:
    items = [{"image": str(tmp_path / f"{i:04d}.tif"), "label": i * 0.5, "name": f"{i:04d}.tif"} for i in range(8)]
    train, val = items[:6], items[6:]
    path = ds.write_datalist({"training": train, "validation": val}, tmp_path / "split" / "fold0.json")
    assert ds.read_datalist(path) == {"training": train, "validation": val}
    assert ds.read_datalist(path, section="validation") == val
    plain = ds.write_datalist(train, tmp_path / "plain.json")
    assert ds.read_datalist(plain) == train
    assert not list((tmp_path / "split").glob(".*.tmp"))


def test_datalist_relative_paths_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({"training": [{"image": "img/a.tif", "label": 1.0}]}))
    assert ds.read_datalist(path, "training")[0]["image"] == str(tmp_path.resolve() / "img" / "a.tif")
    with pytest.raises(ValueError, match="no section 'validation'; sections: training"):
        ds.read_datalist(path, "validation")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ds.read_datalist(path)
    path.write_text(json.dumps([{"label": 1.0}]))
    with pytest.raises(ValueError, match="'image' key"):
        ds.read_datalist(path)
    with pytest.raises(ValueError, match="'image' key"):
        ds.write_datalist([{"label": 1}], tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
