"""MONAI-style JSON datalists: write items (or sections of them) atomically, read them back with paths resolved."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.utils.atomic import atomic_write_json

__all__ = ["write_datalist", "read_datalist"]


def _check_items(items: Any, where: str) -> list[dict]:
    if not isinstance(items, list) or not all(isinstance(i, dict) and "image" in i for i in items):
        raise ValueError(f"{where}: expected a list of dicts that each have an 'image' key")
    return items


def write_datalist(items: Sequence[dict] | Mapping[str, Sequence[dict]], path: str | os.PathLike) -> Path:
    """Write items (a list, or sections such as ``{"training": [...], "validation": [...]}``) as JSON atomically.

    Args:
        items: a list of data dicts, or a mapping of section name to such lists (MONAI datalist style).
        path: destination JSON file.

    Returns:
        The written path.
    """
    if isinstance(items, Mapping):
        payload: Any = {str(k): _check_items(list(v), f"section {k!r}") for k, v in items.items()}
    else:
        payload = _check_items(list(items), "datalist")
    return atomic_write_json(path, payload)


def _resolve(items: list[dict], base: Path) -> list[dict]:
    # Relative image paths are relative to the datalist's folder, as in MONAI's decathlon datalists.
    return [
        {**item, "image": str(base / item["image"])} if not os.path.isabs(item["image"]) else item for item in items
    ]


def read_datalist(path: str | os.PathLike, section: str | None = None) -> list[dict] | dict[str, list[dict]]:
    """Read a datalist written by :func:`write_datalist` (or by hand).

    Args:
        path: the JSON file.
        section: for a sectioned file, the section to return (e.g. ``"training"``); None returns everything.

    Returns:
        A list of items, or a mapping of sections to lists; relative image paths resolved against the file's folder.
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"datalist {path} is not valid JSON ({err})") from None
    base = path.parent.resolve()
    if isinstance(content, list):
        if section is not None:
            raise ValueError(f"datalist {path} is a plain list; it has no section {section!r}")
        return _resolve(_check_items(content, str(path)), base)
    if not isinstance(content, dict):
        raise ValueError(f"datalist {path} must hold a list or an object of lists, found {type(content).__name__}")
    if section is not None:
        if section not in content:
            raise ValueError(f"datalist {path} has no section {section!r}; sections: {', '.join(content)}")
        return _resolve(_check_items(content[section], f"{path} [{section}]"), base)
    return {k: _resolve(_check_items(v, f"{path} [{k}]"), base) for k, v in content.items()}
