"""Command-line checks and one-line errors under ``python -m monai.bundle run`` (scripts.utils.cli)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from scripts import command
from scripts.utils import cli

from conftest import BUNDLE_ROOT

RUNNER = "/venv/lib/python3.11/site-packages/monai/bundle/__main__.py"
TRAIN = str(BUNDLE_ROOT / "configs" / "train.json")
PRETRAIN = str(BUNDLE_ROOT / "configs" / "pretrain.json")
CONFIGS = BUNDLE_ROOT / "configs"


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
    assert "pretraining" not in cli.config_ids(TRAIN)


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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--max_epochs", "two"], "--max_epochs two: expected an integer, like the default 100"),
        (["--max_epochs", "2.5"], "--max_epochs 2.5: expected an integer, like the default 100"),
        (["--learning_rate", "fast"], "--learning_rate fast: expected a number, like the default 0.0001"),
        (["--use_mlflow", "maybe"], "--use_mlflow maybe: expected True or False, like the default True"),
        # the runner reads `false` as the text "false", which is true: tracking would stay on
        (["--use_mlflow=false"], "--use_mlflow false: expected True or False, like the default True"),
        (["--num_workers", "True"], "--num_workers True: expected an integer, like the default 0"),
        (["--crop_size", "4"], "--crop_size 4: expected a list, like the default [256, 256]"),
        (
            ["--experiment_name", "2024"],
            "--experiment_name 2024: expected a string, like the default 'tfkt_bundle'; "
            "for the text 2024 write --experiment_name \"'2024'\"",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_in_one_line(override, message):
    with pytest.raises(ValueError) as refused:
        cli.check_command_line([RUNNER, "run", "training", "--config_file", TRAIN, *override])
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "override",
    [
        ["--learning_rate", "1"],  # an integer where a number is meant
        ["--learning_rate", "1e-3"],
        ["--max_epochs", "$2 * 3"],  # expressions and references are never checked
        ["--max_epochs", "@val_interval"],
        ["--dataset_dir", "/data/x"],  # the default is an expression: any value
        ["--n_folds", "5"],  # the default is None: any value
        ["--use_mlflow", "False"],
        ["--experiment_name", "'2024'"],
        ["--save_execute_config", "/tmp/run.json"],  # MONAI's runner documents a path here too
        ["--train_crop", "[]"],
        ["--resume"],  # a bare flag is True
    ],
)
def test_values_of_the_right_type_pass(override):
    cli.check_command_line([RUNNER, "run", "training", "--config_file", TRAIN, *override])


def test_tfkt_bundle_values_are_checked_on_the_same_path():
    run_id, files, overrides = command.parse_command(["run", "training", "--max_epochs", "two", "--seed", "3"])
    with pytest.raises(ValueError, match="^--max_epochs two: expected an integer, like the default 100$"):
        cli.check_overrides(files, overrides)
    run_id, files, overrides = command.parse_command(["run", "training", "--max_epochs", "2", "--init_path", "null"])
    cli.check_overrides(files, overrides)  # None is passed on as '$None', an expression


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"max_epoch": 3}, "max_epoch adds the id 'max_epoch', a near-miss of 'max_epochs'"),
        ({"trian#trainer#max_epochs": 3}, "adds the id 'trian', a near-miss of 'train'"),
        (
            {"train#trainer#max_epoch": 3},
            "adds the id 'train#trainer#max_epoch', a near-miss of 'train#trainer#max_epochs'",
        ),
        ({"+tracked_params": {"sede": 1}}, "adds the id 'tracked_params#sede', a near-miss of 'tracked_params#seed'"),
    ],
)
def test_a_misspelt_id_in_an_override_file_is_refused(tmp_path, content, message):
    extra = tmp_path / "my_override.json"
    extra.write_text(json.dumps(content))
    expected = f"^{re.escape(str(extra))}: .*{re.escape(message)} in the configs before it; use that id, or a name"
    with pytest.raises(ValueError, match=expected):
        cli.check_command_line([RUNNER, "run", "training", "--config_file", f"['{TRAIN}','{extra}']"])


@pytest.mark.parametrize(
    "files",
    [
        ["train.json", "pretrain.json"],  # adds pretraining next to training, dataset_kind next to dataset_dir
        ["train.json", "evaluate.json"],
        ["train.json", "pretrain.json", "multi_gpu_train.json"],
        ["inference.json", "inference_onnx.json"],
        ["inference.json", "inference_openvino.json"],  # adds runtime_network next to network
    ],
)
def test_new_ids_of_the_bundle_override_files_pass(files):
    cli.check_config_files([str(CONFIGS / f) for f in files])


def test_new_ids_of_a_user_override_file_pass(tmp_path):
    extra = tmp_path / "my_override.json"
    extra.write_text(json.dumps({"max_epochs": 3, "warmup_epochs": 2, "+tracked_params": {"warmup": "@warmup_epochs"}}))
    cli.check_command_line([RUNNER, "run", "training", "--config_file", f"{TRAIN},{extra}", "--warmup_epochs", "4"])
    with pytest.raises(ValueError, match="^--warmup_epochs four: expected an integer, like the default 2$"):
        cli.check_command_line(
            [RUNNER, "run", "training", "--config_file", f"{TRAIN},{extra}", "--warmup_epochs", "four"]
        )


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


class _MissingDecoder(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise ModuleNotFoundError("cannot decode JPEG 2000 pixel data\n(pip install pylibjpeg-openjpeg)")


def test_an_error_from_a_dataloader_worker_is_its_own_first_line():
    # torch re-raises it in the main process as the same class, with the worker's traceback for message
    with pytest.raises(ModuleNotFoundError) as caught:
        next(iter(torch.utils.data.DataLoader(_MissingDecoder(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)
    assert cli.one_line(caught.value) == "cannot decode JPEG 2000 pixel data"
    assert cli.one_line(ModuleNotFoundError("Caught nothing\nsecond line")) == "Caught nothing"


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


@pytest.mark.parametrize(
    ("override", "line"),
    [
        (["--max_epoch", "1"], "error: ValueError: --max_epoch names no id of the configs; did you mean --max_epochs?"),
        (["--max_epochs", "two"], "error: ValueError: --max_epochs two: expected an integer, like the default 100"),
    ],
    ids=["misspelt id", "wrong type"],
)
def test_a_mistaken_override_stops_the_runner_in_one_line(tmp_path, override, line):
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/train.json"]
    command += [*override, "--output_dir", str(tmp_path)]
    done = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-2:] == [line, "(full traceback: TFKT_DEBUG=1)"]
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "finetune").exists()  # stopped before any work
