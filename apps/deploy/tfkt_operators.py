"""The app's two operators: score the selected CT series with the bundle, and write each series' quality SR."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_series_selection import StudySelectedSeries
from tfkt_scoring import BundleScorer, find_bundle_series, series_result
from tfkt_sr import build_quality_sr, summary_text
from tfkt_uids import PreparedInput

__all__ = ["SCORES_JSON", "NothingToScoreError", "ScoringSettings", "SeriesScoreOperator", "QualitySRWriterOperator"]

LOGGER = logging.getLogger(__name__)
SCORES_JSON = "tfkt_scores.json"


class NothingToScoreError(ValueError):
    """The input holds no CT series to score."""


@dataclass(frozen=True)
class ScoringSettings:
    """What the scoring depends on, written into the JSON so a result says how it was made."""

    checkpoint: Path
    network_preset: str | None
    threshold: float
    device: str
    version: str
    prepared: PreparedInput


def _selected_series(study_selected_series_list: list[StudySelectedSeries]) -> list[DICOMSeries]:
    return [s.series for study in study_selected_series_list for s in study.selected_series]


def _source_files(series: DICOMSeries) -> list[Path]:
    """The files the SDK loaded the series from (pydicom keeps each dataset's ``filename``)."""
    return [Path(sop.get_native_sop_instance().filename) for sop in series.get_sop_instances()]


class SeriesScoreOperator(Operator):
    """Scores every selected series slice by slice with the bundle; writes ``tfkt_scores.json``.

    Named input: ``study_selected_series_list`` (from ``DICOMSeriesSelectorOperator``).
    Named output: ``scores``: ``{"settings": ..., "series": [one dict per series, see tfkt_scoring.series_result]}``.
    """

    def __init__(self, fragment: Fragment, *args, output_folder: Path, settings: ScoringSettings, **kwargs) -> None:
        self.output_folder = Path(output_folder)
        self.settings = settings
        self._scorer: BundleScorer | None = None  # built on first use: the network loads once per app run
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("study_selected_series_list")
        spec.output("scores")

    def compute(self, op_input, op_output, context) -> None:
        selected = _selected_series(op_input.receive("study_selected_series_list") or [])
        if not selected:
            raise NothingToScoreError("no CT series selected: the input holds no DICOM series with Modality CT")
        results = [self._score(series) for series in selected]
        scores = {"settings": self._settings_json(), "series": results}
        self.output_folder.mkdir(parents=True, exist_ok=True)
        (self.output_folder / SCORES_JSON).write_text(json.dumps(scores, indent=2))
        op_output.emit(scores, "scores")

    def _score(self, series: DICOMSeries) -> dict:
        if self._scorer is None:
            s = self.settings
            self._scorer = BundleScorer.from_bundle(s.checkpoint, s.network_preset, s.device)
        files = _source_files(series)
        bundle_series = find_bundle_series(files, series.SeriesInstanceUID)
        if len(bundle_series) != len(files):  # e.g. a localizer inside the series: the bundle skips it, with a reason
            LOGGER.warning(
                "series %s: SDK loaded %d files, bundle reads %d slices", series, len(files), len(bundle_series)
            )
        result = series_result(self._scorer.score_series(bundle_series), self.settings.threshold)
        prepared = self.settings.prepared
        for item in result["slices"] + result["flagged"]:  # the input files, not the filled copies
            item["source"] = str(prepared.original_path(item["source"]))
        uids = (result["study_instance_uid"], result["series_instance_uid"])
        result["derived_uids"] = {uid: prepared.derived_uids[uid] for uid in uids if uid in prepared.derived_uids}
        LOGGER.info(summary_text(result))
        return result

    def _settings_json(self) -> dict:
        s = self.settings
        return {
            "checkpoint": str(s.checkpoint),
            "network_preset": s.network_preset,
            "threshold": s.threshold,
            "device": str(self._scorer.device) if self._scorer else s.device,
            "app_version": s.version,
            "input": str(s.prepared.source),
        }


class QualitySRWriterOperator(Operator):
    """Writes one Comprehensive SR per scored series, ``tfkt_sr_<SeriesInstanceUID>.dcm``, in the output folder.

    Named inputs: ``scores`` (from :class:`SeriesScoreOperator`) and ``study_selected_series_list`` (the source
    instances: the SR copies patient and study from them and lists them as evidence).
    """

    def __init__(self, fragment: Fragment, *args, output_folder: Path, model_name: str, version: str, **kwargs):
        self.output_folder = Path(output_folder)
        self.model_name = model_name
        self.version = version
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("scores")
        spec.input("study_selected_series_list")

    def compute(self, op_input, op_output, context) -> None:
        scores = op_input.receive("scores")
        series_list = _selected_series(op_input.receive("study_selected_series_list") or [])
        sources = {s.SeriesInstanceUID: s for s in series_list}
        self.output_folder.mkdir(parents=True, exist_ok=True)
        for result in scores["series"]:
            evidence = [
                sop.get_native_sop_instance() for sop in sources[result["series_instance_uid"]].get_sop_instances()
            ]
            sr = build_quality_sr(result, evidence, self.model_name, self.version)
            path = self.output_folder / f"tfkt_sr_{result['series_instance_uid']}.dcm"
            sr.save_as(path, enforce_file_format=True)
            LOGGER.info("wrote %s", path)
