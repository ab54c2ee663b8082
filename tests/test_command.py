"""``tfkt-bundle`` (scripts.command): the workflows from any directory, None values kept, mistakes in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts import command

from conftest import BUNDLE_ROOT

TFKT_BUNDLE = Path(sys.executable).parent / "tfkt-bundle"  # installed by `make venv` (pip install -e .)
TINY = [
    "--network_preset",
    "hybrid_tiny",
    "--batch_size",
    "4",
    "--max_shift",
    "2",
    "--n_boot",
    "20",
    "--crop_size",
    "[32, 32]",
]


def test_workflows_map_to_the_bundle_configs_and_values_read_as_literals():
    run_id, files, overrides = command.parse_command(
        ["run", "pretraining", "--max_epochs", "3", "--crop_size=[32, 32]", "--group_key", "None", "--resume"]
    )
    assert run_id == "pretraining"
    assert files == [str(BUNDLE_ROOT / "configs" / "train.json"), str(BUNDLE_ROOT / "configs" / "pretrain.json")]
    assert overrides == {
        "max_epochs": 3,
        "crop_size": [32, 32],
        "group_key": "$None",
        "resume": True,
        "bundle_root": str(BUNDLE_ROOT),
    }
    assert command.parse_command(["run", "inference", "--config_file", "inference.json"])[:2] == (
        "run",
        [str(BUNDLE_ROOT / "configs" / "inference.json")],
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "trainin"], "usage: tfkt-bundle run"),
        ([], "usage"),
        (["run", "training", "x"], "unexpected argument"),
        (["run", "training", "--config_file", "nope.json"], "config file nope.json not found"),
    ],
)
def test_bad_command_lines_are_refused(argv, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        command.parse_command(argv) if argv else command.parse_command(["--help"])


def _tfkt_bundle(*args, cwd):
    assert TFKT_BUNDLE.is_file(), "tfkt-bundle is installed by `make venv`"
    return subprocess.run([str(TFKT_BUNDLE), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_training_runs_from_any_directory_with_a_none_value(tmp_path, tiny_ct_data):
    done = _tfkt_bundle(
        "run",
        "training",
        "--dataset_dir",
        tiny_ct_data["train"],
        "--max_epochs",
        "1",
        "--val_fraction",
        "0.25",
        "--group_key",
        "None",
        "--use_mlflow",
        "False",
        "--ckpt_dir",
        tmp_path / "models",
        "--output_dir",
        tmp_path / "eval",
        *TINY,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training finished after 1 epochs" in done.stdout
    assert (tmp_path / "models" / "model.pt").is_file()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["run", "training", "--dataset_dir", "/nonexistent/set", "--ckpt_dir", "{ckpt}"],
            "error: FileNotFoundError: ldctiqac: dataset folder /nonexistent/set does not exist",
        ),
        (  # the default model path is the released weights, which training must not replace
            ["run", "training", "--dataset_dir", "/nonexistent/set"],
            "error: ValueError: " + str(BUNDLE_ROOT / "models" / "model.pt") + " is released weights",
        ),
        (
            ["run", "training", "--max_epoch", "1"],
            "error: ValueError: --max_epoch names no id of the configs; did you mean --max_epochs?",
        ),
        (
            ["run", "evaluating", "--ckpt_path", "/nonexistent/model.pt"],
            "error: FileNotFoundError: /nonexistent/model.pt does not exist",
        ),
    ],
)
def test_mistakes_end_in_one_line_whatever_the_directory(tmp_path, tiny_ct_data, args, line):
    fill = {"{test}": str(tiny_ct_data["test"]), "{ckpt}": str(tmp_path / "models")}
    args = [fill.get(a, a) for a in args]
    done = _tfkt_bundle(*args, "--output_dir", tmp_path / "eval", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-2].startswith(line), done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("workflow", ["training", "evaluating"])
def test_an_output_folder_that_cannot_be_written_stops_the_workflow_before_any_work(tmp_path, tiny_ct_data, workflow):
    (tmp_path / "file").write_text("")
    data = tiny_ct_data["train" if workflow == "training" else "test"]
    done = _tfkt_bundle("run", workflow, "--dataset_dir", data, "--output_dir", tmp_path / "file", *TINY, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-2].startswith(f"error: OSError: cannot write outputs to {tmp_path / 'file'}")
    assert "Traceback" not in done.stdout + done.stderr
