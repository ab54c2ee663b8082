"""Print what `tfkt-score` does with a long series and with many series: wall time, peak memory, completeness.

Usage (from the repository root, after ``make venv``):
``python benchmarks/stress.py [--series DIR] [--slices 1000] [--n-series 100] [--checkpoint PATH]``

Builds, from one DICOM series (default: the shared 20-slice JPEG 2000 abdomen series), a series of ``--slices``
slices (the series repeated, each copy with new SOPInstanceUIDs and positions further along z) and a study of
``--n-series`` series (copies with new Series/SOP UIDs), pixel data kept as stored. Scores each with
``tfkt-score`` in a child process and prints its wall time, slices per second, peak resident memory (the child's
``ru_maxrss``), and whether every slice of every series reached the outputs with nothing skipped: each series
folder with its ``scores.csv`` (one row per slice) and ``summary.json``, ``index.csv`` and ``report.html``. Exits 1
when a run is incomplete. Without ``--checkpoint`` the scores come from a randomly initialised network (timing and
memory only).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pydicom
import torch
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tfkt_bundle"))

from scripts.nets.networks import create_network  # noqa: E402

SHARED_SERIES = ROOT.parent / "shared" / "data" / "ct_series_abdomen"


def read_series(folder: Path) -> list[pydicom.Dataset]:
    """The DICOM files under ``folder``, read, in order along the patient axis."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    datasets = [pydicom.dcmread(p) for p in files]
    return sorted(datasets, key=lambda d: float(d.ImagePositionPatient[2]))


def _write_copy(datasets, out: Path, series_uid: str, z_offset: float, first_instance: int) -> None:
    for k, source in enumerate(datasets):
        copy = source.copy()
        copy.SOPInstanceUID = generate_uid()
        copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        copy.SeriesInstanceUID = series_uid
        copy.StudyInstanceUID = copy.get("StudyInstanceUID") or "1.2.826.0.1.3680043.8.498.1"
        copy.InstanceNumber = first_instance + k
        x, y, z = (float(v) for v in source.ImagePositionPatient)
        copy.ImagePositionPatient = [x, y, z + z_offset]
        copy.save_as(out / f"{copy.SOPInstanceUID}.dcm")


def build_long_series(datasets, out: Path, slices: int) -> int:
    out.mkdir(parents=True)
    span = float(datasets[-1].ImagePositionPatient[2]) - float(datasets[0].ImagePositionPatient[2])
    step = span / max(1, len(datasets) - 1)
    uid, written = generate_uid(), 0
    while written < slices:
        part = datasets[: slices - written]
        _write_copy(part, out, uid, (written // len(datasets)) * (span + step), written + 1)
        written += len(part)
    return written


def build_study(datasets, out: Path, n_series: int) -> int:
    for s in range(n_series):
        folder = out / f"series_{s:03d}"
        folder.mkdir(parents=True)
        _write_copy(datasets, folder, generate_uid(), 0.0, 1)
    return n_series * len(datasets)


def score(
    inputs: Path,
    out: Path,
    checkpoint: Path,
    preset: str | None,
    options: Sequence[str] = (),
    program: Sequence[str] | None = None,
) -> dict:
    """Run tfkt-score (or ``program``, a command line taking its arguments) in a child process; figures of the run."""
    program = list(program or [str(Path(sys.executable).parent / "tfkt-score")])
    command = [*program, str(inputs), "--out", str(out), *options]
    command += ["--checkpoint", str(checkpoint)] + (["--network-preset", preset] if preset else [])
    log = out.parent / f"{out.name}.log"
    start = time.perf_counter()
    with open(log, "w") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory, not the largest child's so far
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3):
        raise SystemExit(f"tfkt-score failed ({code}): {log.read_text()[-2000:]}")
    with open(out / "index.csv", newline="") as handle:
        index = list(csv.DictReader(handle))
    scored = sum(_rows(out / r["folder"] / "scores.csv") for r in index)
    missing = [r["folder"] for r in index if not (out / r["folder"] / "summary.json").is_file()]
    missing += [] if (out / "report.html").is_file() else ["report.html"]
    peak = usage.ru_maxrss / 2**20  # KiB -> GiB
    return {
        "wall_s": wall,
        "series": len(index),
        "scored": scored,
        "skipped": _rows(out / "skipped.csv"),
        "missing": missing,
        "peak_gib": peak,
    }


def _rows(table: Path) -> int:
    with open(table, newline="") as handle:
        return len(list(csv.DictReader(handle)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, default=SHARED_SERIES)
    parser.add_argument("--slices", type=int, default=1000)
    parser.add_argument("--n-series", type=int, default=100)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--network-preset")
    args = parser.parse_args()
    datasets = read_series(args.series)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = root / "random.pt"
            torch.save(create_network(args.network_preset or "hybrid_lite0").state_dict(), checkpoint)
        runs = [
            ("one series, short", 1, build_long_series(datasets, root / "short", len(datasets)), root / "short"),
            (f"one series of {args.slices}", 1, build_long_series(datasets, root / "long", args.slices), root / "long"),
            (
                f"{args.n_series} series",
                args.n_series,
                build_study(datasets, root / "study", args.n_series),
                root / "study",
            ),
        ]
        header = ("run", "slices", "series", "scored", "skipped", "wall s", "slices/s", "peak RSS GiB", "complete")
        print(f"{header[0]:<24} " + " ".join(f"{h:>8}" for h in header[1:]))
        incomplete = []
        for name, n_series, slices, inputs in runs:
            result = score(inputs, root / f"out_{inputs.name}", checkpoint, args.network_preset)
            rate = result["scored"] / result["wall_s"]
            complete = (result["series"], result["scored"], result["skipped"], result["missing"]) == (
                n_series,
                slices,
                0,
                [],
            )
            incomplete += [] if complete else [f"{name}: {result}"]
            numbers = (slices, result["series"], result["scored"], result["skipped"])
            timing = (
                f"{result['wall_s']:>8.1f} {rate:>8.2f} {result['peak_gib']:>8.2f} {'yes' if complete else 'NO':>8}"
            )
            print(f"{name:<24} " + " ".join(f"{n:>8}" for n in numbers) + f" {timing}")
        if incomplete:
            raise SystemExit("incomplete outputs:\n" + "\n".join(incomplete))


if __name__ == "__main__":
    main()
