"""MLflow tracking: a real SQLite store; failures never reach the engine."""

import logging
import socket
import sqlite3
import time

import mlflow
import pytest
from ignite.engine import Engine, Events

from scripts.training.tracking import SafeMLFlowHandler, store_problem, tracking_switched_off, write_run_config


def _engine():
    engine = Engine(lambda e, b: float(b))

    @engine.on(Events.EPOCH_COMPLETED)
    def _metric(e):
        e.state.metrics["val_score"] = 0.5 * e.state.epoch

    return engine


def test_logs_metrics_and_params_to_sqlite(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    handler = SafeMLFlowHandler(
        tracking_uri=uri,
        experiment_name="t",
        run_name="r1",
        iteration_log=False,
        experiment_param={"lr": 0.1},
        close_on_complete=True,
    )
    engine = _engine()
    handler.attach(engine)
    engine.run([1, 2], max_epochs=3)
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("t").experiment_id])[0]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_score")] == [0.5, 1.0, 1.5]
    assert run.data.params["lr"] == "0.1" and run.info.status == "FINISHED"


def test_refused_store_warns_and_the_engine_runs(tmp_path, caplog):
    handler = SafeMLFlowHandler(tracking_uri=f"file://{tmp_path}/mlruns", experiment_name="t")
    engine = _engine()
    handler.attach(engine)
    engine.run([1], max_epochs=2)
    assert engine.state.epoch == 2
    assert "MLflow tracking switched off" in caplog.text


def test_failure_during_the_run_switches_tracking_off(tmp_path, caplog, monkeypatch):
    handler = SafeMLFlowHandler(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db", experiment_name="t", run_name="r")
    engine = _engine()
    handler.attach(engine)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise OSError("disk full")

    monkeypatch.setattr(handler.client, "log_batch", broken)
    engine.run([1], max_epochs=3)
    assert engine.state.epoch == 3
    assert len(calls) == 1  # switched off after the first failure
    assert "disk full" in caplog.text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_locked_sqlite_store_warns_once_and_the_engine_runs(tmp_path, caplog, capfd):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()  # a real store, tables created
    other = sqlite3.connect(tmp_path / "mlruns.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process writing, or stuck
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    trainer_side = SafeMLFlowHandler(tracking_uri=uri, experiment_name="t", run_name="r", probe_timeout=0.5)
    validator_side = SafeMLFlowHandler(tracking_uri=uri, experiment_name="t", run_name="r", probe_timeout=0.5)
    engine = _engine()
    trainer_side.attach(engine)
    validator_side.attach(engine)
    engine.run([1, 2], max_epochs=3)
    elapsed = time.monotonic() - start
    assert engine.state.epoch == 3
    assert 0.5 <= elapsed < 3  # waited for the lock once, then went on without MLflow
    (warning,) = _warnings(caplog)  # one for the store, not one per handler
    assert (
        warning
        == f"MLflow tracking switched off: SQLite store {tmp_path / 'mlruns.db'} not writable: database is locked"
    )
    assert "Traceback" not in capfd.readouterr().err  # MLflow was never reached, so it logged nothing
    assert tracking_switched_off(uri)
    other.execute("ROLLBACK")
    other.close()
    assert mlflow.MlflowClient(tracking_uri=uri).search_experiments(filter_string="name = 't'") == []


def test_an_unreachable_server_warns_at_once_and_the_engine_runs(caplog, capfd):
    uri = f"http://127.0.0.1:{_closed_port()}"
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    handler = SafeMLFlowHandler(tracking_uri=uri, experiment_name="t", run_name="r", close_on_complete=True)
    engine = _engine()
    handler.attach(engine)
    engine.run([1], max_epochs=2)
    # MLflow itself retries 7 times with back-off: about 250 s of urllib3 warnings before its error
    assert time.monotonic() - start < 1
    assert engine.state.epoch == 2
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"MLflow tracking switched off: tracking server {uri} not reachable (")
    assert "Connection refused" in warning and "Retrying" not in capfd.readouterr().err


def test_usable_stores_pass_the_probe(tmp_path):
    assert store_problem(f"sqlite:///{tmp_path}/new.db") is None  # MLflow creates it
    assert not (tmp_path / "new.db").exists()  # the probe does not
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db").search_experiments()
    assert store_problem(f"sqlite:///{tmp_path}/mlruns.db") is None
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert store_problem(f"http://127.0.0.1:{server.getsockname()[1]}") is None
    assert store_problem("databricks") is None  # not checked


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_closed_port_fails_the_probe(scheme):
    port = _closed_port()
    assert f"127.0.0.1:{port}" in store_problem(f"{scheme}://127.0.0.1:{port}/mlflow")


def test_run_config_expands_macros_and_applies_overrides(tmp_path):
    (tmp_path / "common.json").write_text('{"net": {"_target_": "Net", "width": "@width"}}')
    config = tmp_path / "train.json"
    config.write_text('{"net": "%' + str(tmp_path / "common.json") + '#net", "width": 8, "lr": 0.1}')
    out = write_run_config(str(tmp_path / "run.json"), {"width": 16, "stage": "x"}, str(config))
    import json

    record = json.loads(open(out).read())
    assert record["config"]["net"] == {"_target_": "Net", "width": "@width"}
    assert record["config"]["width"] == 16 and record["config"]["lr"] == 0.1
    assert record["params"] == {"width": 16, "stage": "x"}
