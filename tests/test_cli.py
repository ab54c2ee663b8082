"""Command-line checks and one-line errors under ``python -m monai.bundle run`` (scripts.utils.cli)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.utils import cli

from conftest import BUNDLE_ROOT

RUNNER = "/venv/lib/python3.11/site-packages/monai/bundle/__main__.py"
TRAIN = str(BUNDLE_ROOT / "configs" / "train.json")
PRETRAIN = str(BUNDLE_ROOT / "configs" / "pretrain.json")


@pytest.fixture(autouse=True)
def _keep_excepthook(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)


def test_overrides_are_read_as_fire_reads_them():
    argv = [RUNNER, "run", "training", "--config_file", TRAIN, "--max_epochs=3", "--resume", "--seed", "4"]
    assert cli.runner_overrides(argv) == [("config_file", TRAIN), ("max_epochs", "3"), ("resume", True), ("seed", "4")]
    assert cli.runner_overrides([RUNNER, "run", "--config_file", TRAIN]) == [("config_file", TRAIN)]


def test_config_ids_of_merged_files_include_nested_and_override_ids():
    ids = cli.config_ids(f"['{TRAIN}','{PRETRAIN}']")
    assert {"max_epochs", "train#trainer#max_epochs", "train#handlers#0", "crop_size", "dataset_kind"} <= ids
    assert "crop_size" not in cli.config_ids(TRAIN)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--max_epoch", "1"], "--max_epoch names no id of the configs; did you mean --max_epochs"),
        (["--dataset_dri", "/x"], "did you mean --dataset_dir"),
        (["--train#trainer#max_epoch", "2"], "did you mean --train#trainer#max_epochs"),
        (["--group_key", "None"], "drops None values; to set None write --group_key '\\$None'"),
        (["--init_path=null"], "--init_path null"),
    ],
)
def test_mistakes_are_refused_with_the_fix(override, message):
    with pytest.raises(ValueError, match=message):
        cli.check_command_line([RUNNER, "run", "training", "--config_file", TRAIN, *override])


def test_valid_lines_pass_and_other_programs_are_left_alone():
    argv = [RUNNER, "run", "training", "--config_file", TRAIN, "--max_epochs", "2", "--train::trainer::max_epochs", "2"]
    cli.check_command_line([*argv, "--tracking", "mlflow", "--group_key", "$None"])
    assert sys.excepthook is cli.report_error
    cli.check_command_line(["pytest", "--max_epoch", "1"])  # not the MONAI runner: nothing to check


def test_expected_errors_are_one_line_with_their_real_class(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    try:
        try:
            raise FileNotFoundError("/data/x does not exist: pass --dataset_dir")
        except FileNotFoundError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression: ...") from inner
    except RuntimeError as err:
        cli.report_error(type(err), err, err.__traceback__)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error: FileNotFoundError: /data/x does not exist: pass --dataset_dir",
        "(full traceback: TFKT_DEBUG=1)",
    ]


def test_defects_and_debug_mode_keep_the_traceback(capsys, monkeypatch):
    def raised(exc):
        try:
            raise exc
        except BaseException as err:  # noqa: BLE001 - the hook is called with whatever was raised
            return err

    err = raised(TypeError("a bug"))
    cli.report_error(type(err), err, err.__traceback__)
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    err = raised(FileNotFoundError("missing"))
    cli.report_error(type(err), err, err.__traceback__)
    assert "Traceback" in capsys.readouterr().err


def test_a_misspelt_override_stops_the_runner_in_one_line(tmp_path):
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        "configs/train.json",
        "--max_epoch",
        "1",
        "--output_dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-2:] == [
        "error: ValueError: --max_epoch names no id of the configs; did you mean --max_epochs?",
        "(full traceback: TFKT_DEBUG=1)",
    ]
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "finetune").exists()  # stopped before any work
