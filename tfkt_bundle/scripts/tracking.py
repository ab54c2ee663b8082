"""MLflow tracking that never stops a training run."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Mapping, Sequence

from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.handlers import MLFlowHandler

from .atomic import atomic_write_json

logger = logging.getLogger(__name__)

_GUARDED = ("start", "iteration_completed", "epoch_completed", "complete", "close")


class SafeMLFlowHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler`` made safe to have on by default.

    * A tracking failure (store unreachable, disk full, bad value) logs one warning and switches tracking off for
      the rest of the run; training goes on.
    * When the runner's ``--tracking mlflow`` has attached MONAI's own handler to the same engine, this one leaves
      the per-iteration and per-epoch metrics to it (same run, no duplicate points) and adds only its parameters
      and artifacts.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._failed = False
        self._deferring = False
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

    def attach(self, engine: Engine) -> None:
        if self._failed:
            return
        super().attach(engine)
        engine.add_event_handler(Events.STARTED, self._check_other_tracker)

    def _check_other_tracker(self, engine: Engine) -> None:
        for handler, *_ in engine._event_handlers.get(Events.STARTED, []):
            owner = getattr(handler, "__self__", None)
            if isinstance(owner, MLFlowHandler) and not isinstance(owner, SafeMLFlowHandler):
                self._deferring = True
                logger.info("--tracking mlflow is on: metrics go through the runner's MLflow handler")
                return

    def iteration_completed(self, engine: Engine) -> None:
        if not self._deferring:
            super().iteration_completed(engine)

    def epoch_completed(self, engine: Engine) -> None:
        if not self._deferring:
            super().epoch_completed(engine)


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
