"""Paths that must exist before a workflow starts, checked up front with an error that names them."""

from __future__ import annotations

import os

__all__ = ["existing_file"]


def existing_file(path: str | os.PathLike, hint: str = "") -> str:
    """Return ``path`` as a string if it is a file; else raise FileNotFoundError naming it and ``hint`` (what to do).

    Config use: ``"load_path": "$scripts.utils.paths.existing_file(@ckpt_path, 'run the training workflow first')"``,
    so that a missing checkpoint is reported by name before any work starts.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist" + (f": {hint}" if hint else ""))
    return str(path)
