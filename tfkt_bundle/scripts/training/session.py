"""A training run from start to end as a user sees it: what it will replace, what it wrote, how to resume it.

``run_training`` is the ``run`` step of ``configs/train.json``. Before training it refuses to replace released
weights (a file listed in the bundle's ``large_files.yml``) and says which other existing model the run will
replace; after it, where every output went; on Ctrl-C (SIGINT) or SIGTERM it marks the MLflow run KILLED, prints the
command that resumes it, and exits with status 130 (143 on SIGTERM, e.g. a scheduler's stop; SIGKILL leaves the last
complete epoch's checkpoint, written atomically). A resumed run reuses the MLflow run name
(:func:`scripts.training.tracking.run_name_for`), so MONAI's MLflow handler continues the same run.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ignite.engine import Engine, Events

from scripts.nets.manifest import listed_entry
from scripts.training.tracking import tracking_switched_off
from scripts.utils.cli import is_bundle_runner

__all__ = ["PropagateErrors", "refuse_released", "run_training", "resume_command"]

logger = logging.getLogger(__name__)


class PropagateErrors:
    """First ``EXCEPTION_RAISED`` handler of an engine: passes every exception straight up.

    Without it, MONAI's StatsHandler logs each one with its whole traceback before re-raising it (a Ctrl-C became
    dozens of lines), and an engine whose only exception handler does not re-raise would swallow the error. The
    error is then reported once, at the top (:func:`scripts.utils.cli.report_error`, or the interruption notice of
    :func:`run_training`).
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def __call__(self, engine: Engine, error: BaseException) -> None:
        raise error


def refuse_released(model_path: str | os.PathLike) -> None:
    """Stop with one line when ``model_path`` is released weights (listed in the bundle's ``large_files.yml``)."""
    released = listed_entry(model_path)
    if released is not None:
        raise ValueError(
            f"{model_path} is released weights (listed in {released[0]}): training must not replace it; "
            "write elsewhere with --ckpt_dir <folder> or --ckpt_path <file>"
        )


def run_training(
    trainer: Engine,
    evaluator: Engine,
    model_path: str,
    last_ckpt: str,
    run_dir: str,
    mlflow_run: Mapping[str, str] | None = None,
) -> None:
    """Run ``trainer``; report what is replaced, what was written, and how to resume after an interruption.

    Args:
        trainer: the workflow's trainer.
        evaluator: its validator (holds the best score and epoch).
        model_path: the best checkpoint this run writes.
        last_ckpt: the resumable checkpoint.
        run_dir: folder of the validation reports.
        mlflow_run: ``tracking_uri``, ``experiment_name`` and ``run_name`` of the run's MLflow record, or None.
    """
    refuse_released(model_path)
    replaces = os.path.isfile(model_path)
    if replaces:
        logger.warning("%s exists: this run replaces it (pass --ckpt_path <another file> to keep it)", model_path)
    interrupted = None
    try:
        with _sigterm_as_interrupt():
            trainer.run()
    except KeyboardInterrupt as stop:
        interrupted = stop
    except BaseException:
        _set_mlflow_status(mlflow_run, "FAILED")
        raise
    if interrupted is not None:
        # Outside the except block: a library that logs with exc_info meanwhile must not print the interrupt's trace.
        _set_mlflow_status(mlflow_run, "KILLED")
        epoch = trainer.state.epoch
        print(f"\ninterrupted in epoch {epoch}; the last complete epoch is saved in {last_ckpt}.", file=sys.stderr)
        print(f"resume with:\n  {resume_command()}", file=sys.stderr)
        raise SystemExit(143 if isinstance(interrupted, _Terminated) else 130)
    _print_outputs(trainer, evaluator, model_path, last_ckpt, run_dir, mlflow_run, replaces)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, ``kill``): handled like Ctrl-C, exit status 128 + 15."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def stop(signum, frame):
        raise _Terminated()

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_command(argv: list[str] | None = None) -> str:
    """The command line that resumes this run: the same ``monai.bundle run`` or ``tfkt-bundle`` command with
    ``--resume True``."""
    argv = list(sys.argv if argv is None else argv)
    if is_bundle_runner(argv[0]):
        program = "python -m monai.bundle"
    elif Path(argv[0]).name == "tfkt-bundle":
        program = "tfkt-bundle"
    else:
        return "the same command with --resume True"
    args, tokens = [], argv[1:]
    for i, token in enumerate(tokens):
        resume_value = i > 0 and tokens[i - 1] == "--resume" and not token.startswith("--")
        if token == "--resume" or token.startswith("--resume=") or resume_value:
            continue
        args.append(token)
    return f"{program} {shlex.join([*args, '--resume', 'True'])}"


def _set_mlflow_status(mlflow_run: Mapping[str, str] | None, status: str) -> None:
    """Mark the run's MLflow record (found by name) as ``status``; tracking problems are only logged."""
    run = _find_mlflow_run(mlflow_run)
    if run is None:
        return
    client, run_id = run
    try:
        client.set_terminated(run_id, status)
    except Exception as err:  # noqa: BLE001 - the record must never hide the interruption itself
        logger.warning("could not mark MLflow run %s %s: %s", run_id, status, err)


def _find_mlflow_run(mlflow_run: Mapping[str, str] | None):
    if not mlflow_run or tracking_switched_off(mlflow_run["tracking_uri"]):  # a store already found unusable
        return None
    try:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=mlflow_run["tracking_uri"])
        experiment = client.get_experiment_by_name(mlflow_run["experiment_name"])
        if experiment is None:
            return None
        runs = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{mlflow_run['run_name']}'")
    except Exception as err:  # noqa: BLE001 - a report, never a reason to fail
        logger.warning("MLflow store not readable: %s", err)
        return None
    return (client, runs[0].info.run_id) if runs else None


def _print_outputs(trainer, evaluator, model_path, last_ckpt, run_dir, mlflow_run, replaced) -> None:
    state = evaluator.state
    best = getattr(state, "best_metric", None)
    best_epoch = getattr(state, "best_metric_epoch", None)
    lines = [f"training finished after {trainer.state.epoch} epochs"]
    if best is not None and best_epoch is not None and best_epoch > 0:
        lines[0] += f"; best validation score {best:.4f} in epoch {best_epoch}"
    if os.path.isfile(model_path):
        lines.append(f"  model        {model_path}" + (" (replaced the previous file)" if replaced else ""))
    lines.append(f"  resumable    {last_ckpt}")
    reports = sorted(p.name for p in Path(run_dir).glob("val_*")) if Path(run_dir).is_dir() else []
    if reports:
        lines.append(f"  validation   {run_dir}: {', '.join(reports)}")
    run = _find_mlflow_run(mlflow_run)
    if run is not None:
        lines.append(f"  MLflow run   {mlflow_run['run_name']} (id {run[1]}) in {mlflow_run['tracking_uri']}")
    print("\n".join(lines))
