"""Checkpoint handlers: a killed write keeps the previous file; the best score survives a resume."""

import pytest
import torch
from ignite.engine import Engine, Events

from scripts.training.checkpoint import FileCheckpoint, resume_requested


def _evaluator(scores):
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics["val_score"] = scores[e.state.epoch - 1]

    return engine


def _best(tmp_path, net):
    return FileCheckpoint(tmp_path / "model.pt", {"model": net}, score_metric="val_score")


def test_best_model_is_replaced_only_by_a_better_score(tmp_path):
    net = torch.nn.Linear(2, 1)
    engine = _evaluator([0.5, 0.4, 0.9, 0.7])
    saver = _best(tmp_path, net)
    saver.attach(engine)
    weights = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: weights.append(net.weight.detach().clone()))
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: net.weight.data.add_(1.0))
    engine.run([0], max_epochs=4)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(saved) == {"weight", "bias"}  # a single object is saved as its plain state dict
    assert torch.equal(saved["weight"], weights[2])
    assert saver.state_dict()["_saved"][0][0] == pytest.approx(0.9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_killed_write_keeps_the_previous_best(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 1)
    engine = _evaluator([0.5, 0.9])
    _best(tmp_path, net).attach(engine)
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
    first = _best(tmp_path, net)
    engine = _evaluator([0.8])
    first.attach(engine)
    engine.run([0], max_epochs=1)
    resumed = _best(tmp_path, net)
    resumed.load_state_dict(first.state_dict())
    engine = _evaluator([0.3, 0.95])
    resumed.attach(engine)
    before = (tmp_path / "model.pt").read_bytes()
    net.weight.data.add_(1.0)
    engine.run([0], max_epochs=1)
    assert (tmp_path / "model.pt").read_bytes() == before  # 0.3 does not beat the restored 0.8
    engine.run([0], max_epochs=2)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net.weight)  # 0.95 does


def test_last_checkpoint_every_epoch_and_resume_decision(tmp_path, caplog):
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    trainer = Engine(lambda e, b: None)
    path = tmp_path / "run" / "last.pt"
    epochs = []
    FileCheckpoint(path, {"model": net, "optimizer": optimizer, "trainer": trainer}).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(torch.load(path)["trainer"]["iteration"]))
    assert not resume_requested(True, str(path))  # nothing saved yet: start fresh, with a warning
    assert "does not exist" in caplog.text
    trainer.run([0, 1, 2], max_epochs=2)
    state = torch.load(path, weights_only=True)
    assert state["trainer"]["iteration"] == 6 and set(state) == {"model", "optimizer", "trainer"}
    assert epochs == [3, 6]  # written at the end of each epoch
    assert resume_requested(True, str(path)) and not resume_requested(False, str(path))
