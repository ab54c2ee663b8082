"""Short, sorted listings of names for error and log messages."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["name_list"]


def name_list(names: Iterable[str], limit: int = 10) -> str:
    """The names sorted and comma-separated, the first ``limit`` shown and the rest counted."""
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return f"{shown}, ... (+{len(names) - limit} more)" if len(names) > limit else shown
