"""Up-front path checks and message listings (scripts.utils.paths, scripts.utils.listing)."""

from __future__ import annotations

import pytest

from scripts.utils.listing import name_list
from scripts.utils.paths import existing_file


def test_existing_file_returns_the_path_or_names_it_with_the_hint(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    assert existing_file(tmp_path / "model.pt") == str(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match=r"absent.pt does not exist: train a model first$"):
        existing_file(tmp_path / "absent.pt", "train a model first")
    with pytest.raises(FileNotFoundError, match=r"does not exist$"):
        existing_file(tmp_path)  # a folder is not a checkpoint


def test_name_list_sorts_and_counts_what_it_leaves_out():
    assert name_list(["b", "a", "c"]) == "a, b, c"
    assert name_list([f"n{i:02d}" for i in range(12)], limit=3) == "n00, n01, n02, ... (+9 more)"
