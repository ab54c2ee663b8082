"""MLflow tracking: a real SQLite store; failures never reach the engine."""

import mlflow
from ignite.engine import Engine, Events

from scripts.training.tracking import SafeMLFlowHandler, write_run_config


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
