"""MONAI Deploy app of tfkt_bundle: no-reference image quality (0 = bad .. 4 = excellent) of every CT slice.

    python app.py -i DICOM_FOLDER -o OUTPUT_FOLDER [-m model.pt | -m MODELS_FOLDER]

DICOM loader -> CT series selector -> per-slice scoring with the bundle -> ``tfkt_scores.json`` and one DICOM
Comprehensive SR per series. The SDK's argument parser takes only -i/-o/-m/-w/-l, so the rest comes from environment
variables: TFKT_CHECKPOINT (weights; else -m; else the bundle's models/model.pt), TFKT_NETWORK_PRESET (default: the
bundle config's), TFKT_THRESHOLD (flag slices scored below it, default 2.0), TFKT_DEVICE (auto, cpu or cuda).

What cannot be scored (a file that is not CT, a scout series, a slice that does not decode or holds NaN, a series
that fails) is skipped with its reason, as tfkt-score skips it: logged, and listed in ``skipped.csv`` and under
``skipped`` in ``tfkt_scores.json``; the other series are scored.

Exit status, as tfkt-score's (scripts.score.EXIT_CODES): 0 every series scored; 3 scored, but some files, slices or
series were skipped; 4 nothing scored (no DICOM study, no CT series, or no series that could be scored); 2 bad
set-up, found before any work (no input folder, an output folder that cannot be written, no checkpoint, a bad
TFKT_* setting) or a missing pixel-decoder package (the line names it); 1 any other failure. Expected failures are
one line (TFKT_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from holoscan.conditions import CountCondition
from monai.deploy.core import AppContext, Application, RuntimeEnv
from monai.deploy.exceptions import ItemNotExistsError
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from tfkt_operators import NothingToScoreError, QualitySRWriterOperator, ScoringSettings, SeriesScoreOperator
from tfkt_scoring import BUNDLE_ROOT
from tfkt_uids import PreparedInput, prepare_input

from scripts.ctio.dicom_pixels import DecoderMissingError
from scripts.score import EXIT_FAILED, EXIT_NOTHING, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE
from scripts.utils.cli import DEBUG_ENV, root_cause
from scripts.utils.paths import writable_dir

__version__ = "0.1.0"
MODEL_NAME = "TFKT CT IQA"
# Every CT series of every study: tfkt-score scores them all too.
CT_RULES = '{"selections": [{"name": "CT series", "conditions": {"Modality": "(?i)CT"}}]}'


def checkpoint_path(model_path: str | os.PathLike | None) -> Path:
    """TFKT_CHECKPOINT, else the -m file (or ``model.pt`` found under the -m folder), else the bundle's weights."""
    if os.environ.get("TFKT_CHECKPOINT"):
        return Path(os.environ["TFKT_CHECKPOINT"])
    model = Path(model_path) if model_path else None
    if model is not None and model.is_file():
        return model
    if model is not None and model.is_dir():  # a MAP's models folder holds <name>/model.pt
        found = sorted(model.rglob("model.pt"))
        if found:
            return found[0]
    return BUNDLE_ROOT / "models" / "model.pt"


def threshold_setting() -> float:
    """TFKT_THRESHOLD (default 2.0): slices scored below it are flagged."""
    text = os.environ.get("TFKT_THRESHOLD", "2.0")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"TFKT_THRESHOLD={text!r} is not a number (a score on the 0-4 scale, e.g. 2.0)")
    return value


def device_setting() -> str:
    """TFKT_DEVICE (default auto: the GPU if torch sees one): auto, cpu or cuda."""
    device = os.environ.get("TFKT_DEVICE", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"TFKT_DEVICE={device!r}: choose auto, cpu or cuda")
    if device == "cuda":
        import torch  # loaded already by tfkt_scoring

        if not torch.cuda.is_available():
            raise ValueError("TFKT_DEVICE=cuda: no CUDA device is visible to torch")
    return device


def scoring_settings(app_context: AppContext, prepared: PreparedInput) -> ScoringSettings:
    """The settings from the environment (see the module docstring)."""
    return ScoringSettings(
        checkpoint=checkpoint_path(app_context.model_path),
        network_preset=os.environ.get("TFKT_NETWORK_PRESET") or None,
        threshold=threshold_setting(),
        device=device_setting(),
        version=__version__,
        prepared=prepared,
    )


def _option(argv: Sequence[str], short: str, long: str) -> str | None:
    """The value of ``-x VALUE``, ``--long VALUE`` or ``--long=VALUE`` in ``argv`` (as the SDK's parser reads it)."""
    for k, token in enumerate(argv[1:], start=1):
        if token in (short, long) and k + 1 < len(argv):
            return argv[k + 1]
        if token.startswith(long + "="):
            return token.split("=", 1)[1]
    return None


def check_setup(argv: Sequence[str]) -> None:
    """What must hold before any work, each a one-line error: the input exists, the output folder takes a synced
    write with room to spare (scripts.utils.paths.writable_dir), the checkpoint exists, the TFKT_* settings parse.

    Checked here, before the SDK's own parser, which makes the output folder and fails on it with a traceback.

    Raises:
        FileNotFoundError: no input, model path or checkpoint.
        OSError: the output folder cannot be written.
        ValueError: a TFKT_* setting is wrong.
    """
    env = RuntimeEnv()  # the SDK's defaults: HOLOSCAN_INPUT_PATH etc., else input/, output/, models/
    source = _option(argv, "-i", "--input") or env.input
    if not Path(source).exists():
        raise FileNotFoundError(f"input folder {source} does not exist")
    writable_dir(_option(argv, "-o", "--output") or env.output)
    model = _option(argv, "-m", "--model")
    if model is not None and not Path(model).exists():
        raise FileNotFoundError(f"model path {model} does not exist")
    checkpoint = checkpoint_path(model or env.model)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist (set TFKT_CHECKPOINT or pass -m)")
    threshold_setting()
    device_setting()


def _temporary_workdir() -> Path:
    """Where filled copies go without -w; removed at exit (the outputs name the input files, not the copies)."""
    path = tempfile.mkdtemp(prefix="tfkt_deploy_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return Path(path)


class TfktQualityApp(Application):
    """DICOM folder in; ``tfkt_scores.json`` and ``tfkt_sr_<SeriesInstanceUID>.dcm`` out."""

    def compose(self) -> None:
        app_context = Application.init_app_context(self.argv)
        output = Path(app_context.output_path)
        # Before the graph: the SDK loader needs complete UIDs (see tfkt_uids); a complete input is used as it is.
        workdir = Path(app_context.workdir) if app_context.workdir else _temporary_workdir()
        prepared = prepare_input(Path(app_context.input_path), workdir)
        settings = scoring_settings(app_context, prepared)
        logging.info("tfkt settings: %s", settings)

        loader = DICOMDataLoaderOperator(
            self, CountCondition(self, 1), input_folder=prepared.folder, name="dicom_loader"
        )
        selector = DICOMSeriesSelectorOperator(self, rules=CT_RULES, all_matched=True, name="ct_series_selector")
        scorer = SeriesScoreOperator(self, output_folder=output, settings=settings, name="tfkt_scorer")
        self.scorer = scorer  # main() reads what it skipped
        writer = QualitySRWriterOperator(
            self, output_folder=output, model_name=MODEL_NAME, version=__version__, name="quality_sr_writer"
        )
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, scorer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(selector, writer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(scorer, writer, {("scores", "scores")})


def exit_status(error: BaseException) -> int | None:
    """The exit status of an expected failure (its root cause), or None for a defect (it keeps its traceback)."""
    if isinstance(error, (NothingToScoreError, ItemNotExistsError)):
        return EXIT_NOTHING
    if isinstance(error, DecoderMissingError):  # a package to install: set-up, like a missing checkpoint
        return EXIT_USAGE
    if isinstance(error, OSError):
        return EXIT_FAILED
    return None


def main() -> int:
    """Run the app on ``sys.argv``; expected failures end in one line and an exit status (module docstring)."""
    try:
        check_setup(sys.argv)
    except (OSError, ValueError) as err:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    app = TfktQualityApp()
    try:
        app.run()
    except Exception as err:  # holoscan re-raises what an operator raised
        cause = root_cause(err)
        status = exit_status(cause)
        if os.environ.get(DEBUG_ENV) or status is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return status
    return EXIT_SKIPPED if app.scorer.skipped else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
