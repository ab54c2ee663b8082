"""Paths that must exist, or be writable, before a workflow starts: checked up front with an error that names them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["MIN_FREE_BYTES", "existing_file", "writable_dir"]

MIN_FREE_BYTES = 64 * 2**20  # a report page with thumbnails and per-series plots is a few MB per hundred series


def existing_file(path: str | os.PathLike, hint: str = "") -> str:
    """Return ``path`` as a string if it is a file; else raise FileNotFoundError naming it and ``hint`` (what to do).

    Config use: ``"load_path": "$scripts.utils.paths.existing_file(@ckpt_path, 'run the training workflow first')"``,
    so that a missing checkpoint is reported by name before any work starts.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist" + (f": {hint}" if hint else ""))
    return str(path)


def writable_dir(path: str | os.PathLike, min_free_bytes: int = MIN_FREE_BYTES) -> str:
    """Create ``path`` and prove it takes a synced write with room to spare; else raise OSError naming it.

    Fails before any work when the outputs could not be written: not a folder, read-only, or a (nearly) full disk.
    Returns ``path`` as a string, for config use like :func:`existing_file`.
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise OSError(f"cannot write outputs to {out}: {err.strerror or err}") from None
    free = shutil.disk_usage(out).free
    if free < min_free_bytes:
        raise OSError(
            f"cannot write outputs to {out}: only {free / 2**20:.0f} MiB free (need {min_free_bytes / 2**20:.0f})"
        )
    return str(path)
