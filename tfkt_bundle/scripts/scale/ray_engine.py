"""``tfkt-score --engine ray``: the series of an archive scored by Ray Data workers, written as the local engine does.

The driver finds the series from headers (:mod:`scripts.scale.jobs`) and hands them, one series per task, to a pool
of Ray actors that each hold one model, loaded once (:class:`scripts.scale.worker.SeriesScorer`; one GPU each when
the cluster has GPUs). As each series' rows come back, the driver writes its folder with the inference workflow's
own report (:class:`scripts.clinical.exam_report.ExamReport`), then ``index.csv``, ``skipped.csv`` and
``report.html`` at the end: the same files, from the same writers, as the local engine. Workers read the inputs,
the bundle and the checkpoint at the paths the driver sees; they write nothing.

A worker that dies (a killed process, a lost node) is restarted by Ray and its series is scored again by Ray's own
retries (actor ``max_restarts``, ``max_task_retries``); a series is written once, from one complete answer.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from scripts.clinical.exam_report import ExamReport
from scripts.clinical.outputs import finished_series
from scripts.command import BUNDLE_ROOT
from scripts.ctio.slices import SLICE_KEYS
from scripts.evaluation.handlers import PredictionReport
from scripts.evaluation.report import write_predictions_csv
from scripts.utils.skips import SkipLog

from .jobs import SeriesJob, find_series_jobs
from .worker import ScorerSettings, SeriesScorer, decode_result, encode_job

__all__ = ["MAX_TASK_RETRIES", "ray_session", "score_on_ray"]

# A series whose worker dies this many more times fails the run (a file that crashes its decoder would otherwise
# be retried for ever); its finished neighbours are kept for --resume.
MAX_TASK_RETRIES = 3
Rows = list[dict]
Skipped = list[tuple[str, str]]


def score_on_ray(inputs: Sequence[Path], out: Path, args: argparse.Namespace) -> tuple[Rows, Skipped]:
    """Score ``inputs`` into ``out`` on Ray; return this run's per-slice rows and the skipped items (as the local
    engine's ``scripts.score.score`` does).

    Args:
        inputs: DICOM folders and files, NIfTI volumes, image files or folders of them.
        out: the output folder.
        args: ``tfkt-score``'s checked options (``address``, ``checkpoint``, ``threshold``, ``batch_size``,
            ``device``, ``backend`` as resolved, ``precision``, ``network_preset``, ``resume``, ``verbose``).
    """
    _configure_logging(args.verbose)
    out = Path(out).resolve()  # the folder the local engine names (its workflow gets it resolved)
    finished = finished_series(out) if args.resume else {}
    skip_log, found = SkipLog(out), []
    jobs = find_series_jobs([Path(p).resolve() for p in inputs], found, exclude=finished)
    skip_log.add(found)
    report = PredictionReport(str(out), prefix="slice", only_best=False, extra_keys=SLICE_KEYS)
    exam = ExamReport(report, str(out), args.threshold, skip_log=skip_log, finished=finished)
    if jobs:
        with ray_session(args.address, args.verbose):
            for rows, skipped in _scored(jobs, args):
                skip_log.add(skipped)
                exam.add_series(rows)
    if report.rows:
        write_predictions_csv(report.rows, report.path("predictions.csv"))
    exam(None)  # the workflow's end of run (it reads nothing from the engine): index, skipped.csv, page, table
    return report.rows, exam.skipped


@contextmanager
def ray_session(address: str | None = None, verbose: bool = False) -> Iterator[None]:
    """Ray for one run: the caller's connection if the process has one (kept open), else a connection to
    ``address`` ("auto", "HOST:PORT") or, without one, to a local Ray instance (started if none is running), closed
    at the end; closing stops a local instance this run started, and nothing of it is left running."""
    import ray
    import ray.data

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    level = logging.INFO if verbose else logging.WARNING
    ray.init(address=address, include_dashboard=False, logging_level=level)
    logging.getLogger("ray.data").setLevel(level)  # its plan, timings and (off a terminal) progress: --verbose
    try:
        yield
    finally:
        ray.shutdown()


def _scored(jobs: Sequence[SeriesJob], args: argparse.Namespace) -> Iterator[tuple[Rows, Skipped]]:
    """(rows, skipped) of each series, in the order workers finish them."""
    import ray

    gpus = _gpus_per_worker(args.device, args.backend)
    settings = ScorerSettings(
        bundle_root=str(BUNDLE_ROOT), checkpoint=str(Path(args.checkpoint).resolve()), backend=args.backend,
        device="cuda" if gpus else "cpu", batch_size=args.batch_size, network_preset=args.network_preset,
        precision=getattr(args, "precision", "auto"),
    )  # fmt: skip
    series = ray.data.from_items([encode_job(job) for job in jobs], override_num_blocks=len(jobs))
    with warnings.catch_warnings():  # retries have no named parameter before Ray 2.64; requirements pin 2.60
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        scored = series.map_batches(
            SeriesScorer, fn_constructor_args=(settings,), batch_size=1, compute=_pool(len(jobs), gpus),
            num_cpus=1, num_gpus=gpus, max_restarts=-1, max_task_retries=MAX_TASK_RETRIES,
        )  # fmt: skip
    for row in scored.iter_rows():  # Ray Data's progress bar counts the series
        yield decode_result(row)


def _gpus_per_worker(device: str, backend: str) -> int:
    """One GPU per worker when the cluster has any (``--device auto``) or must (``cuda``); none for ``cpu`` or for
    OpenVINO, which scores on CPUs."""
    import ray

    available = ray.cluster_resources().get("GPU", 0)
    if device == "cuda" and available < 1:
        raise ValueError("--device cuda: the Ray cluster has no GPU")
    return 1 if device != "cpu" and backend != "openvino" and available >= 1 else 0


def _pool(n_jobs: int, gpus: int):
    """As many workers as the cluster holds (one per GPU, else per CPU), no more than there are series."""
    import ray

    slots = int(ray.cluster_resources().get("GPU" if gpus else "CPU", 1))
    size = max(1, min(slots, n_jobs))
    # One task in flight per worker: a slow series holds up no other, and a dead worker had only one to redo.
    return ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)


def _configure_logging(verbose: bool) -> None:
    """The bundle's console logging, as the workflow sets it up: warnings and skips, INFO with ``--verbose``."""
    logging.config.fileConfig(BUNDLE_ROOT / "configs" / "logging.conf", disable_existing_loggers=False)
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)
