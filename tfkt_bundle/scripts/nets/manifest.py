"""SHA-256 of the released weights, in the bundle's ``large_files.yml``, checked whenever a listed file is loaded.

The manifest is the MONAI model zoo's own: a ``large_files`` list of entries with ``path`` (relative to the bundle
root), ``url``, ``hash_val`` and ``hash_type``, as read by ``python -m monai.bundle download_large_files`` and by the
zoo's bundle check. That check downloads only listed files that are absent and verifies the hash of those present,
so a released file shipped with the bundle is checked there too; every entry needs a ``url`` key (``''`` when the
file ships inside the bundle), since the zoo passes the entry to ``download_url`` as it is.

A weights file belongs to the bundle whose manifest is the nearest one above it. A file listed there must exist and
match its hash, else it is refused by name with both hashes; an unlisted file (one's own checkpoint) loads as it is.

Release weights with one command, from the bundle root::

    python -m scripts.nets.manifest add models/model.pt [--url URL]
    python -m scripts.nets.manifest check            # every listed file against its hash
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from scripts.utils.atomic import atomic_write_text
from scripts.utils.cli import report_error
from scripts.utils.paths import existing_file

__all__ = [
    "HASH_TYPE",
    "MANIFEST_NAMES",
    "WeightsHashError",
    "add_entry",
    "check_all",
    "file_hash",
    "find_manifest",
    "listed_entry",
    "read_entries",
    "verified_checkpoint",
    "verify_weights",
]

# The names the zoo's check and MONAI's download_large_files look for, in the zoo's order of preference.
MANIFEST_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
HASH_TYPE = "sha256"
# The hash types MONAI's check_hash accepts, so that an entry means the same to both readers.
_HASH_TYPES = ("md5", "sha1", "sha256", "sha512")
_CHUNK = 1 << 20
_HEADER = (
    "# Large files of the bundle (MONAI model-zoo format): each released weights file with its hash.\n"
    "# Loading a listed file checks the hash; write an entry with `python -m scripts.nets.manifest add <file>`.\n"
)


class WeightsHashError(ValueError):
    """A listed weights file whose content is not the released one."""


def file_hash(path: str | os.PathLike, hash_type: str = HASH_TYPE) -> str:
    """Hex digest of a file, streamed in 1 MiB chunks: one pass over a checkpoint, never all of it in memory."""
    digest = hashlib.new(_check_hash_type(hash_type, path))
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_manifest(path: str | os.PathLike) -> Path | None:
    """The manifest of the bundle holding ``path``: the nearest ``large_files.*`` in a folder above it, or None."""
    for folder in Path(os.path.abspath(path)).parents:
        for name in MANIFEST_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def read_entries(manifest: str | os.PathLike) -> list[dict]:
    """The ``large_files`` entries of a manifest, each a dict with at least ``path``; ValueError if malformed."""
    manifest = Path(manifest)
    try:
        data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{manifest} is not valid YAML/JSON: {str(err).splitlines()[0]}") from None
    if data is None:
        return []
    entries = data.get("large_files", ()) if isinstance(data, dict) else ()
    entries = [] if entries is None else entries  # "large_files:" with nothing under it
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("path") for e in entries):
        raise ValueError(f"{manifest} must hold 'large_files': a list of entries, each with a 'path'")
    return entries


def listed_entry(path: str | os.PathLike) -> tuple[Path, dict] | None:
    """(manifest, entry) of the manifest entry naming ``path``, or None for a file no manifest lists."""
    manifest = find_manifest(path)
    if manifest is None:
        return None
    relative = _relative_to_bundle(path, manifest)
    for entry in read_entries(manifest):
        if os.path.normpath(str(entry["path"])) == relative:
            return manifest, entry
    return None


def verify_weights(path: str | os.PathLike) -> Path:
    """Check ``path`` against its bundle's manifest (one streamed hash) and return it; unlisted files pass as they are.

    Raises:
        FileNotFoundError: the file is listed but missing (the message says where to get it).
        WeightsHashError: the file is listed and its hash differs (the message gives both).
        ValueError: the manifest or its entry is malformed.
    """
    path = Path(path)
    found = listed_entry(path)
    if found is None:
        return path
    manifest, entry = found
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed in {manifest} but missing: {_how_to_get(manifest, entry)}")
    expected = str(entry.get("hash_val") or "").strip().lower()
    hash_type = str(entry.get("hash_type") or HASH_TYPE).lower()
    if not expected:
        raise ValueError(f"{manifest} lists {entry['path']} without a hash_val: {_record_hint(path)}")
    actual = file_hash(path, _check_hash_type(hash_type, manifest))
    if actual != expected:
        raise WeightsHashError(
            f"refusing {path}: its {hash_type} is {actual} but {manifest.name} expects {expected} "
            f"(not the released file: {_how_to_get(manifest, entry)}; for new weights, {_record_hint(path)})"
        )
    return path


def verified_checkpoint(path: str | os.PathLike, hint: str = "") -> str:
    """``path`` as a string once it exists and matches its manifest entry, if any: a config's ``load_path``.

    Config use, in place of ``scripts.utils.paths.existing_file``:
    ``"load_path": "$scripts.nets.manifest.verified_checkpoint(@ckpt_path, 'train a model first')"``.
    """
    verify_weights(path)
    return existing_file(path, hint)


def add_entry(path: str | os.PathLike, url: str | None = None, manifest: str | os.PathLike | None = None) -> dict:
    """Write (or rewrite) the manifest entry of ``path`` with its SHA-256; returns the entry.

    Args:
        path: the weights file, inside the manifest's bundle.
        url: where the released file can be downloaded; None keeps the entry's url ('' for a new one).
        manifest: the manifest file; None means the nearest one above ``path`` (it must exist).
    """
    path = Path(existing_file(path, "write the weights first"))
    manifest = Path(manifest) if manifest is not None else find_manifest(path)
    if manifest is None:
        raise FileNotFoundError(
            f"no {' / '.join(MANIFEST_NAMES)} above {path}: pass --manifest <bundle root>/{MANIFEST_NAMES[0]}"
        )
    entries = read_entries(manifest) if manifest.is_file() else []
    relative = _relative_to_bundle(path, manifest)
    old = next((e for e in entries if os.path.normpath(str(e["path"])) == relative), None)
    entry = {
        "path": Path(relative).as_posix(),
        "url": url if url is not None else str((old or {}).get("url") or ""),
        "hash_val": file_hash(path, HASH_TYPE),
        "hash_type": HASH_TYPE,
    }
    entries = [entry if e is old else e for e in entries] if old is not None else [*entries, entry]
    _write(manifest, entries)
    return entry


def check_all(manifest: str | os.PathLike) -> list[str]:
    """Verify every file a manifest lists; returns their paths. Raises on the first missing or mismatched one."""
    manifest = Path(manifest)
    return [str(verify_weights(manifest.parent / str(entry["path"]))) for entry in read_entries(manifest)]


def _relative_to_bundle(path: str | os.PathLike, manifest: Path) -> str:
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(manifest.parent))
    if relative.startswith(os.pardir):
        raise ValueError(f"{path} is outside the bundle of {manifest}")
    return os.path.normpath(relative)


def _check_hash_type(hash_type: str, where: str | os.PathLike) -> str:
    if hash_type not in _HASH_TYPES:
        raise ValueError(f"{where}: hash_type {hash_type!r} is not one of {', '.join(_HASH_TYPES)}")
    return hash_type


def _how_to_get(manifest: Path, entry: dict) -> str:
    if entry.get("url"):
        return (
            f"download it from {entry['url']} "
            f"(python -m monai.bundle download_large_files --bundle_path {manifest.parent})"
        )
    return "restore the file released with the bundle (see models/README.md)"


def _record_hint(path: Path) -> str:
    return f"record them with `python -m scripts.nets.manifest add {path}`"


def _write(manifest: Path, entries: list[dict]) -> None:
    if manifest.suffix == ".json":
        atomic_write_text(manifest, json.dumps({"large_files": entries}, indent=2) + "\n")
        return
    atomic_write_text(manifest, _HEADER + yaml.safe_dump({"large_files": entries}, sort_keys=False))


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m scripts.nets.manifest add FILE [--url URL]`` or ``... check``."""
    sys.excepthook = report_error
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="write the SHA-256 entry of a weights file into its bundle's manifest")
    add.add_argument("path", help="the weights file, e.g. models/model.pt")
    add.add_argument("--url", default=None, help="where the released file is downloaded from (kept if omitted)")
    add.add_argument("--manifest", default=None, help="the manifest (default: the nearest large_files.yml above)")
    check = sub.add_parser("check", help="verify every file the manifest lists against its hash")
    check.add_argument("--manifest", default=MANIFEST_NAMES[0], help="the manifest (default: ./large_files.yml)")
    args = parser.parse_args(argv)
    if args.command == "add":
        entry = add_entry(args.path, args.url, args.manifest)
        print(f"{entry['path']}: {entry['hash_type']} {entry['hash_val']}")
    else:
        checked = check_all(existing_file(args.manifest, "run from the bundle root or pass --manifest"))
        print(f"{len(checked)} listed file(s) match their hashes")


if __name__ == "__main__":
    main()
