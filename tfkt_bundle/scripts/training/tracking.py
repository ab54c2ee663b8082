"""MLflow tracking that never stops a training run."""

from __future__ import annotations

import functools
import logging
import os
import socket
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import ignite.distributed as idist
from monai.bundle import ConfigParser
from monai.handlers import MLFlowHandler

from scripts.utils.atomic import atomic_write_json, atomic_write_text
from scripts.utils.cli import one_line

logger = logging.getLogger(__name__)

_GUARDED = ("start", "iteration_completed", "epoch_completed", "complete", "close")
# Long enough for another process's write to commit, short enough that a dead store costs seconds, not the
# minutes MLflow's own HTTP retries (7 with back-off) or SQLite busy waits would take.
PROBE_TIMEOUT_S = 5.0
# Stores that failed in this process: the other handlers of the run (trainer, validator) stay quiet on them.
_SWITCHED_OFF: set[str] = set()


def store_problem(tracking_uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the MLflow store ``tracking_uri`` cannot be used now, in one line, or None when it looks usable.

    Checked without MLflow, within ``timeout`` seconds: an ``http(s)://`` server (or the proxy in between) must
    accept a connection, an existing ``sqlite:///`` file must not be locked. Other stores are not checked.
    """
    scheme = urlsplit(tracking_uri).scheme
    if scheme in ("http", "https"):
        return _server_problem(tracking_uri, timeout)
    if scheme == "sqlite":
        return _sqlite_problem(tracking_uri, timeout)
    return None


def tracking_switched_off(tracking_uri: str) -> bool:
    """Whether tracking to ``tracking_uri`` failed earlier in this process (and so is off until it ends)."""
    return tracking_uri in _SWITCHED_OFF


def _server_problem(tracking_uri: str, timeout: float) -> str | None:
    url = urlsplit(tracking_uri)
    host, port = url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):  # MLflow's requests would go through the proxy
        proxy_url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or host, proxy_url.port or 80
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"tracking server {url.scheme}://{url.netloc} not reachable ({host}:{port}: {one_line(e)})"
    return None


def _sqlite_problem(tracking_uri: str, timeout: float) -> str | None:
    path = unquote(tracking_uri[len("sqlite:///") :].partition("?")[0])
    if not path or not Path(path).is_file():
        return None  # a new store (MLflow creates it) or an in-memory one: nothing to lock yet
    try:
        db = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=timeout, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")  # the write lock MLflow needs: taken, or waited for up to `timeout`
            db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.Error as e:
        return f"SQLite store {path} not writable: {one_line(e)}"
    return None


class SafeMLFlowHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler`` made safe to have on by default.

    * The store is checked first (:func:`store_problem`): an unreachable server or a locked SQLite file costs one
      warning within ``probe_timeout`` seconds instead of minutes of MLflow retries.
    * A tracking failure (store unreachable, disk full, bad value) logs one warning and switches tracking to that
      store off for the rest of the process, in every handler; training goes on.

    When the runner's ``--tracking mlflow`` adds MONAI's own handler to the same engines, the bundle configs pass
    ``epoch_log=False`` here (see ``runner_tracking`` in ``configs/train.json``): metrics then go through the
    runner's handler once, and this one adds only the run's parameters and artifacts to the same run.
    """

    def __init__(
        self, tracking_uri: str | None = None, *args: Any, probe_timeout: float = PROBE_TIMEOUT_S, **kwargs: Any
    ) -> None:
        self._failed = False
        # the store MONAI's handler would use: MLFLOW_TRACKING_URI first, then the argument, then ./mlruns.db
        self._uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri or ""
        if not self._uri:
            self._uri = f"sqlite:///{quote(Path('mlruns.db').absolute().as_posix(), safe='/:')}"
        problem = None if self._uri in _SWITCHED_OFF else store_problem(self._uri, probe_timeout)
        if self._uri in _SWITCHED_OFF or problem:
            self._switch_off(problem)
            return
        try:
            super().__init__(tracking_uri, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - e.g. a tracking URI MLflow refuses
            self._switch_off(one_line(e))
            return
        for name in _GUARDED:
            setattr(self, name, self._guard(getattr(self, name)))

    def _switch_off(self, reason: str | None, where: str = "") -> None:
        self._failed = True
        if self._uri in _SWITCHED_OFF:  # already reported by another handler of this store
            return
        _SWITCHED_OFF.add(self._uri)
        logger.warning("MLflow tracking switched off%s: %s", f" after an error in {where}" if where else "", reason)

    def _guard(self, method: Callable) -> Callable:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> None:
            if self._failed or self._uri in _SWITCHED_OFF:
                return None
            try:
                return method(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - tracking must never end training
                self._switch_off(one_line(e), method.__name__)
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
