"""Released weights carry their SHA-256 in the bundle's large_files.yml: listed files load only when they match."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from monai.apps.utils import HashCheckError
from monai.bundle import ConfigParser, download_large_files

from scripts.nets.manifest import (
    WeightsHashError,
    add_entry,
    check_all,
    file_hash,
    read_entries,
    verified_checkpoint,
    verify_weights,
)
from scripts.nets.weights import load_state_dict_file

from conftest import BUNDLE_ROOT

URL = "https://example.org/releases/v1/model.pt"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"fc.weight": torch.randn(4, 3, generator=generator), "fc.bias": torch.randn(4, generator=generator)}


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A bundle folder with an empty manifest and models/model.pt (a small state dict), not yet listed."""
    (tmp_path / "large_files.yml").write_text("large_files: []\n")
    (tmp_path / "models").mkdir()
    torch.save(_state(), tmp_path / "models" / "model.pt")
    return tmp_path


@pytest.fixture
def released(bundle) -> Path:
    """models/model.pt listed in the manifest with its hash and a download url."""
    add_entry(bundle / "models" / "model.pt", url=URL)
    return bundle / "models" / "model.pt"


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_listed_file_that_matches_loads(released):
    state = load_state_dict_file(released)
    assert state.keys() == _state().keys()
    assert all(torch.equal(state[k], v) for k, v in _state().items())
    assert verified_checkpoint(released) == str(released)


def test_tampered_file_is_refused_with_both_hashes(released):
    expected = _sha256(released)
    _tamper(released)
    actual = _sha256(released)
    for load in (load_state_dict_file, verified_checkpoint):
        with pytest.raises(WeightsHashError) as err:
            load(released)
        message = str(err.value)
        assert "\n" not in message
        assert str(released) in message and f"sha256 is {actual}" in message and f"expects {expected}" in message
        assert URL in message


def test_listed_but_missing_file_is_named_with_where_to_get_it(released):
    released.unlink()
    for load in (load_state_dict_file, verify_weights):
        missing = rf"{re.escape(str(released))} is listed in .*large_files.yml but missing: download it from {URL}"
        with pytest.raises(FileNotFoundError, match=missing):
            load(released)
    # The manifest's reason wins over the config's own hint for a missing checkpoint.
    with pytest.raises(FileNotFoundError, match="is listed in"):
        verified_checkpoint(released, "train a model first")


def test_listed_file_shipped_without_url_says_to_restore_it(bundle):
    path = bundle / "models" / "model.pt"
    add_entry(path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="restore the file released with the bundle"):
        verify_weights(path)


def test_unlisted_files_load_as_they_are(bundle, tmp_path_factory):
    inside = bundle / "models" / "model.pt"  # in a bundle whose manifest does not list it
    outside = tmp_path_factory.mktemp("own") / "checkpoint.pt"  # no manifest above it at all
    torch.save({"model": _state(), "epoch": 2}, outside)
    for path in (inside, outside):
        assert torch.equal(load_state_dict_file(path)["fc.bias"], _state()["fc.bias"])
        assert verified_checkpoint(path) == str(path)
    with pytest.raises(FileNotFoundError, match="absent.pt does not exist: train a model first"):
        verified_checkpoint(bundle / "models" / "absent.pt", "train a model first")


def test_add_writes_the_sha256_and_rewrites_its_entry(bundle):
    path = bundle / "models" / "model.pt"
    (bundle / "models" / "other.pt").write_bytes(b"other weights")
    add_entry(bundle / "models" / "other.pt")
    add_entry(path, url=URL)
    torch.save({"fc.bias": torch.zeros(4)}, path)  # new weights, released again: url kept, hash renewed
    entry = add_entry(path)
    entries = read_entries(bundle / "large_files.yml")
    assert [e["path"] for e in entries] == ["models/other.pt", "models/model.pt"]
    assert entries[1] == entry
    assert entry == {"path": "models/model.pt", "url": URL, "hash_val": _sha256(path), "hash_type": "sha256"}
    assert entries[0]["hash_val"] == hashlib.sha256(b"other weights").hexdigest()
    assert check_all(bundle / "large_files.yml") == [str(bundle / "models" / "other.pt"), str(path)]


def test_command_line_add_and_check(bundle):
    command = [sys.executable, "-m", "scripts.nets.manifest"]
    env = {**os.environ, "PYTHONPATH": str(BUNDLE_ROOT)}
    added = subprocess.run(
        [*command, "add", "models/model.pt", "--url", URL], cwd=bundle, env=env, capture_output=True, text=True
    )
    assert added.returncode == 0, added.stderr
    digest = _sha256(bundle / "models" / "model.pt")
    assert added.stdout.strip() == f"models/model.pt: sha256 {digest}"
    assert yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"][0]["hash_val"] == digest
    checked = subprocess.run([*command, "check"], cwd=bundle, env=env, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.strip() == "1 listed file(s) match their hashes"
    _tamper(bundle / "models" / "model.pt")
    refused = subprocess.run([*command, "check"], cwd=bundle, env=env, capture_output=True, text=True)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0].startswith("error: WeightsHashError: refusing models/model.pt: its sha256")


def test_monai_reads_the_same_manifest_without_downloading(released):
    # What the model zoo's check runs: a present, matching file is verified and nothing is fetched (offline here).
    download_large_files(bundle_path=str(released.parents[1]))
    _tamper(released)
    with pytest.raises(HashCheckError):
        download_large_files(bundle_path=str(released.parents[1]))


def test_config_load_path_refuses_a_tampered_checkpoint(released):
    config = {
        "imports": ["$import scripts", "$import scripts.nets.manifest"],
        "ckpt_path": str(released),
        "load_path": "$scripts.nets.manifest.verified_checkpoint(@ckpt_path, 'train a model first')",
    }

    def load_path() -> str:
        parser = ConfigParser(config)
        parser.get_parsed_content("imports")  # as the bundle runner does before any other id
        return parser.get_parsed_content("load_path")

    assert load_path() == str(released)
    _tamper(released)
    with pytest.raises(RuntimeError) as err:
        load_path()
    assert isinstance(err.value.__cause__, WeightsHashError)


def test_a_pickled_object_is_refused_before_it_runs(tmp_path):
    sentinel = tmp_path / "created-by-unpickling"

    class Payload:
        def __reduce__(self):
            return open, (str(sentinel), "w")

    path = tmp_path / "checkpoint.pt"
    torch.save({"fc.bias": torch.zeros(4), "extra": Payload()}, path)
    with pytest.raises(ValueError) as err:
        load_state_dict_file(path)
    message = str(err.value)
    assert "\n" not in message and err.value.__cause__ is None
    assert f"refusing {path}: it holds objects other than tensors" in message and "open" in message
    assert not sentinel.exists()


def test_malformed_manifest_is_named(bundle):
    (bundle / "large_files.yml").write_text("models/model.pt: abc\n")
    with pytest.raises(ValueError, match=r"large_files.yml must hold 'large_files'"):
        load_state_dict_file(bundle / "models" / "model.pt")
    entry = "large_files:\n- path: models/model.pt\n  url: ''\n  hash_val: abc\n  hash_type: crc\n"
    (bundle / "large_files.yml").write_text(entry)
    with pytest.raises(ValueError, match="hash_type 'crc' is not one of"):
        load_state_dict_file(bundle / "models" / "model.pt")


def test_file_hash_streams_large_files(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * (3 * 4096 + 7))  # a little over 3 MiB: several chunks and a remainder
    assert file_hash(path) == _sha256(path)
    assert file_hash(path, "md5") == hashlib.md5(path.read_bytes()).hexdigest()


def test_bundle_manifest_entries_are_complete_and_match():
    manifest = BUNDLE_ROOT / "large_files.yml"
    for entry in read_entries(manifest):
        # The zoo passes each entry to monai's download_url as it is: url is a required argument there.
        assert set(entry) == {"path", "url", "hash_val", "hash_type"}, entry
        assert entry["hash_type"] == "sha256" and re.fullmatch(r"[0-9a-f]{64}", entry["hash_val"]), entry
    assert len(check_all(manifest)) == len(read_entries(manifest))
