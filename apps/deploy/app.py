"""MONAI Deploy app of tfkt_bundle: no-reference image quality (0 = bad .. 4 = excellent) of every CT slice.

    python app.py -i DICOM_FOLDER -o OUTPUT_FOLDER [-m model.pt | -m MODELS_FOLDER]

DICOM loader -> CT series selector -> per-slice scoring with the bundle -> ``tfkt_scores.json`` and one DICOM
Comprehensive SR per series. The SDK's argument parser takes only -i/-o/-m/-w/-l, so the rest comes from environment
variables: TFKT_CHECKPOINT (weights; else -m; else the bundle's models/model.pt), TFKT_NETWORK_PRESET (default: the
bundle config's), TFKT_THRESHOLD (flag slices scored below it, default 2.0), TFKT_DEVICE (auto, cpu or cuda).

Exit status, as tfkt-score's: 0 scored; 4 nothing to score (no DICOM study, or no CT series in it); 2 the input
folder does not exist; 1 any other failure. Expected failures are one line (TFKT_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from holoscan.conditions import CountCondition
from monai.deploy.core import AppContext, Application
from monai.deploy.exceptions import ItemNotExistsError
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from tfkt_operators import NothingToScoreError, QualitySRWriterOperator, ScoringSettings, SeriesScoreOperator
from tfkt_scoring import BUNDLE_ROOT
from tfkt_uids import PreparedInput, prepare_input

__version__ = "0.1.0"
MODEL_NAME = "TFKT CT IQA"
# Every CT series of every study: tfkt-score scores them all too.
CT_RULES = '{"selections": [{"name": "CT series", "conditions": {"Modality": "(?i)CT"}}]}'


def checkpoint_path(app_context: AppContext) -> Path:
    """TFKT_CHECKPOINT, else the -m file (or ``model.pt`` found under the -m folder), else the bundle's weights."""
    if os.environ.get("TFKT_CHECKPOINT"):
        return Path(os.environ["TFKT_CHECKPOINT"])
    model = Path(app_context.model_path) if app_context.model_path else None
    if model is not None and model.is_file():
        return model
    if model is not None and model.is_dir():  # a MAP's models folder holds <name>/model.pt
        found = sorted(model.rglob("model.pt"))
        if found:
            return found[0]
    return BUNDLE_ROOT / "models" / "model.pt"


def scoring_settings(app_context: AppContext, prepared: PreparedInput) -> ScoringSettings:
    """The settings from the environment (see the module docstring)."""
    return ScoringSettings(
        checkpoint=checkpoint_path(app_context),
        network_preset=os.environ.get("TFKT_NETWORK_PRESET") or None,
        threshold=float(os.environ.get("TFKT_THRESHOLD", "2.0")),
        device=os.environ.get("TFKT_DEVICE", "auto"),
        version=__version__,
        prepared=prepared,
    )


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
        writer = QualitySRWriterOperator(
            self, output_folder=output, model_name=MODEL_NAME, version=__version__, name="quality_sr_writer"
        )
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, scorer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(selector, writer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(scorer, writer, {("scores", "scores")})


EXIT_FAILED, EXIT_USAGE, EXIT_NOTHING = 1, 2, 4


def main() -> int:
    """Run the app on ``sys.argv``; expected failures end in one line and an exit status (module docstring)."""
    from scripts.utils.cli import DEBUG_ENV, root_cause  # importable once tfkt_scoring has found the bundle

    argv = sys.argv
    flag = next((f for f in ("-i", "--input") if f in argv[:-1]), None)
    given = argv[argv.index(flag) + 1] if flag else None
    if given is not None and not Path(given).exists():
        print(f"error: input folder {given} does not exist", file=sys.stderr)
        return EXIT_USAGE
    try:
        TfktQualityApp().run()
    except Exception as err:  # holoscan re-raises what an operator raised
        cause = root_cause(err)
        if os.environ.get(DEBUG_ENV) or not isinstance(cause, (NothingToScoreError, ItemNotExistsError, OSError)):
            raise
        print(f"error: {cause}", file=sys.stderr)
        return EXIT_FAILED if isinstance(cause, OSError) else EXIT_NOTHING
    return 0


if __name__ == "__main__":
    sys.exit(main())
