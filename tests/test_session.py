"""A training run as a user sees it (scripts.training.session): errors propagate once, the resume command."""

from __future__ import annotations

import pytest
from ignite.engine import Engine
from monai.handlers import StatsHandler

from scripts.training.session import PropagateErrors, resume_command

RUNNER = "/venv/lib/python3.11/site-packages/monai/bundle/__main__.py"


def _failing_engine():
    def step(engine, batch):
        raise FileNotFoundError("/data/x does not exist")

    return Engine(step)


def test_errors_reach_the_caller_before_stats_handler_logs_their_traceback():
    logged = []

    class SpiedStats(StatsHandler):
        def exception_raised(self, engine, e):  # MONAI's version logs the whole traceback, then re-raises
            logged.append(e)
            raise e

    engine = _failing_engine()
    PropagateErrors().attach(engine)
    SpiedStats(iteration_log=False).attach(engine)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        engine.run([0], max_epochs=1)
    assert logged == []


def test_an_engine_whose_only_handler_swallows_errors_still_raises():
    engine = _failing_engine()
    PropagateErrors().attach(engine)
    with pytest.raises(FileNotFoundError):
        engine.run([0], max_epochs=1)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [RUNNER, "run", "training", "--config_file", "configs/train.json", "--max_epochs", "5"],
            "python -m monai.bundle run training --config_file configs/train.json --max_epochs 5 --resume True",
        ),
        (
            [RUNNER, "run", "training", "--resume", "False", "--dataset_dir", "/my data"],
            "python -m monai.bundle run training --dataset_dir '/my data' --resume True",
        ),
        (  # a bare --resume flag: the setting after it stays
            [RUNNER, "run", "training", "--resume", "--seed", "1"],
            "python -m monai.bundle run training --seed 1 --resume True",
        ),
        (
            ["/venv/bin/tfkt-bundle", "run", "training", "--max_epochs", "3"],
            "tfkt-bundle run training --max_epochs 3 --resume True",
        ),
        (
            [RUNNER, "run", "training", "--resume=False", "--seed", "1"],
            "python -m monai.bundle run training --seed 1 --resume True",
        ),
        (["pytest", "-k", "x"], "the same command with --resume True"),
    ],
)
def test_resume_command_repeats_the_run_with_resume(argv, expected):
    assert resume_command(argv) == expected


def test_training_refuses_to_replace_released_weights(tmp_path):
    """A file listed in the bundle's large_files.yml is the release: the run stops before its first step."""
    import torch

    from scripts.nets.manifest import add_entry
    from scripts.training.session import run_training

    (tmp_path / "large_files.yml").write_text("large_files: []\n")
    (tmp_path / "models").mkdir()
    released = tmp_path / "models" / "model.pt"
    torch.save({"w": torch.zeros(1)}, released)
    add_entry(released, url="")
    before = released.read_bytes()
    trainer = Engine(lambda engine, batch: pytest.fail("training started"))
    with pytest.raises(ValueError, match=r"model.pt is released weights \(listed in .*large_files.yml\): training"):
        run_training(trainer, Engine(lambda e, b: None), str(released), str(tmp_path / "last.pt"), str(tmp_path))
    assert released.read_bytes() == before
