"""MLflow tracking that never stops a training run."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
from monai.bundle import ConfigParser
from monai.handlers import MLFlowHandler

from scripts.utils.atomic import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

_GUARDED = ("start", "iteration_completed", "epoch_completed", "complete", "close")


class SafeMLFlowHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler`` made safe to have on by default.

    * A tracking failure (store unreachable, disk full, bad value) logs one warning and switches tracking off for
      the rest of the run; training goes on.

    When the runner's ``--tracking mlflow`` adds MONAI's own handler to the same engines, the bundle configs pass
    ``epoch_log=False`` here (see ``runner_tracking`` in ``configs/train.json``): metrics then go through the
    runner's handler once, and this one adds only the run's parameters and artifacts to the same run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._failed = False
        try:
            super().__init__(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - e.g. a tracking URI MLflow refuses
            self._failed = True
            logger.warning("MLflow tracking switched off: %s", e)
            return
        for name in _GUARDED:
            setattr(self, name, self._guard(getattr(self, name)))

    def _guard(self, method: Callable) -> Callable:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> None:
            if self._failed:
                return None
            try:
                return method(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - tracking must never end training
                self._failed = True
                logger.warning("MLflow tracking switched off after an error in %s: %s", method.__name__, e)
                return None

        return guarded

    def attach(self, engine) -> None:
        if not self._failed:  # a store refused at construction leaves nothing to attach
            super().attach(engine)


def run_name_for(run_dir: str, stage: str, resume: bool = False) -> str:
    """The MLflow run name of a workflow run: ``<stage>_<date>_<time>``, or the interrupted run's name on resume.

    The name is kept in ``<run_dir>/mlflow_run.txt``; MONAI's MLflow handler continues an unfinished run of the same
    name, so a resumed training run extends its own record instead of opening a second one.
    """
    record = Path(run_dir) / "mlflow_run.txt"
    if resume and record.is_file():
        return record.read_text(encoding="utf-8").strip()
    name = f"{stage}_{time.strftime('%Y%m%d_%H%M%S')}"
    if idist.get_rank() == 0:  # other ranks track nothing; one writer keeps the record consistent
        atomic_write_text(record, name + "\n")
    return name


def write_run_config(path: str, params: Mapping[str, Any], config_file: str | Sequence[str] | None = None) -> str:
    """Write the run's configuration as JSON (atomic): the effective parameters and, if given, the config file(s)
    merged, with ``%`` macros expanded and those parameters' effective values (command-line overrides included) in
    place. Logged to MLflow as an artifact, so a run can be repeated from its record alone.
    """
    record: dict[str, Any] = {"params": _jsonable(params)}
    if config_file is not None:
        parser = ConfigParser()
        parser.read_config(config_file)
        parser.resolve_macro_and_relative_ids()
        config = parser.get()
        config.update({k: v for k, v in record["params"].items() if k in config})
        record["config"] = config
    atomic_write_json(path, record)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
