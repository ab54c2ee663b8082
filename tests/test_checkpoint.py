"""Checkpoint handlers: a killed write keeps the previous file; the best score survives a resume."""

import pytest
import torch
from ignite.engine import Engine, Events

from scripts.checkpoint import AtomicCheckpointSaver, LastCheckpoint, resume_requested


def _evaluator(scores):
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics["val_score"] = scores[e.state.epoch - 1]

    return engine


def _saver(tmp_path, net):
    return AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_key_metric=True,
                                 key_metric_name="val_score", key_metric_filename="model.pt")


def test_best_model_is_replaced_only_by_a_better_score(tmp_path):
    net = torch.nn.Linear(2, 1)
    engine = _evaluator([0.5, 0.4, 0.9])
    saver = _saver(tmp_path, net)
    saver.attach(engine)
    weights = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: weights.append(net.weight.detach().clone()))
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: net.weight.data.add_(1.0))
    engine.run([0], max_epochs=3)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], weights[2])
    assert saver.state_dict()["_saved"][0][0] == pytest.approx(0.9)


def test_killed_write_keeps_the_previous_best(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 1)
    engine = _evaluator([0.5, 0.9])
    _saver(tmp_path, net).attach(engine)
    engine.run([0], max_epochs=1)
    before = (tmp_path / "model.pt").read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dying_save)
    net.weight.data.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=2)
    assert (tmp_path / "model.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_best_score_survives_a_resume(tmp_path):
    net = torch.nn.Linear(2, 1)
    first = _saver(tmp_path, net)
    engine = _evaluator([0.8])
    first.attach(engine)
    engine.run([0], max_epochs=1)
    resumed = _saver(tmp_path, net)
    resumed.load_state_dict(first.state_dict())
    engine = _evaluator([0.3])
    resumed.attach(engine)
    before = (tmp_path / "model.pt").read_bytes()
    net.weight.data.add_(1.0)
    engine.run([0], max_epochs=1)
    assert (tmp_path / "model.pt").read_bytes() == before  # 0.3 does not beat the restored 0.8


def test_last_checkpoint_and_resume_decision(tmp_path, caplog):
    net = torch.nn.Linear(2, 1)
    trainer = Engine(lambda e, b: None)
    path = tmp_path / "run" / "last.pt"
    LastCheckpoint(str(path), {"model": net, "trainer": trainer}).attach(trainer)
    assert not resume_requested(True, str(path))  # nothing saved yet: start fresh, with a warning
    assert "does not exist" in caplog.text
    trainer.run([0, 1, 2], max_epochs=2)
    state = torch.load(path, weights_only=True)
    assert state["trainer"]["iteration"] == 6 and set(state) == {"model", "trainer"}
    assert resume_requested(True, str(path)) and not resume_requested(False, str(path))
