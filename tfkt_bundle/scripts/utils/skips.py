"""Skipped items of a run, gathered from every process that reads inputs (DataLoader workers included)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SKIPPED_COLUMNS", "SKIPPED_CSV", "SkipLog"]

# The columns and name of the skipped-items table every scoring front end writes beside its outputs.
SKIPPED_COLUMNS = ("path", "reason")
SKIPPED_CSV = "skipped.csv"


class SkipLog:
    """(path, reason) pairs appended to one hidden file in the run's output folder, then read back once.

    Only the file's path travels to worker processes; each addition is one appending write of whole lines, so
    the lines of several processes never interleave.

    Args:
        folder: the run's output folder (created if needed).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".skipped-", suffix=".jsonl", dir=folder)
        os.close(fd)
        self.path = Path(path)

    def add(self, items: Iterable[tuple[str | os.PathLike, str]]) -> None:
        text = "".join(json.dumps([str(path), str(reason)]) + "\n" for path, reason in items)
        if text:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text)

    def read(self) -> list[tuple[str, str]]:
        """The pairs in the order they were added, each once (several readers may report the same file)."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as handle:
            pairs = [tuple(json.loads(line)) for line in handle if line.strip()]
        return list(dict.fromkeys(pairs))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
