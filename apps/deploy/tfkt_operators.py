"""The app's two operators: score the selected CT series with the bundle, and write each series' quality SR.

What cannot be scored is skipped with its reason, as ``tfkt-score`` skips it: each file, slice or series one line in
the log, in ``skipped.csv`` (``tfkt-score``'s columns) and under ``skipped`` in ``tfkt_scores.json``. A series
with no usable slice (a scout series: Modality CT, every image a localizer) or that fails is one such item; the
other series are scored.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_series_selection import StudySelectedSeries
from tfkt_scoring import BundleScorer, series_result
from tfkt_sr import build_quality_sr, summary_text
from tfkt_uids import PreparedInput

from scripts.ctio.dicom import DicomSeries, DicomSeriesList, Skip, find_dicom_series, record_skip
from scripts.ctio.dicom_pixels import DecoderMissingError
from scripts.utils.atomic import atomic_path, atomic_write_json
from scripts.utils.cli import DEBUG_ENV
from scripts.utils.skips import SKIPPED_COLUMNS, SKIPPED_CSV

__all__ = [
    "SCORES_JSON", "SKIPPED_COLUMNS", "SKIPPED_CSV", "NothingToScoreError", "ScoringSettings", "SeriesScoreOperator",
    "QualitySRWriterOperator",
]  # fmt: skip

LOGGER = logging.getLogger(__name__)
SCORES_JSON = "tfkt_scores.json"


class NothingToScoreError(ValueError):
    """The input holds no CT series to score, or none of its series could be scored."""


class _UnusableSeriesError(ValueError):
    """Internal: a selected series has nothing to score; the message is the reason."""


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


def _folder(files: Sequence[Path]) -> Path:
    """Where a series' files are (the file itself for a one-file series): the path of a series' skip."""
    return Path(os.path.commonpath([str(Path(f).absolute()) for f in files]))


class SeriesScoreOperator(Operator):
    """Scores every selected series slice by slice with the bundle; writes ``tfkt_scores.json`` and ``skipped.csv``.

    The series are found again by the bundle's own reader in one header scan of the loaded folder, the scan that
    ``tfkt-score`` makes of it, so the slices, their order and the skips are ``tfkt-score``'s.

    Named input: ``study_selected_series_list`` (from ``DICOMSeriesSelectorOperator``).
    Named output: ``scores``: ``{"settings": ..., "series": [one dict per scored series, see
    tfkt_scoring.series_result], "skipped": [{"path": ..., "reason": ...}]}``.

    Raises:
        NothingToScoreError: no CT series selected, or none could be scored (the outputs are written first).
        DecoderMissingError: a series needs a pixel decoder that is not installed (every such series would fail).
    """

    def __init__(self, fragment: Fragment, *args, output_folder: Path, settings: ScoringSettings, **kwargs) -> None:
        self.output_folder = Path(output_folder)
        self.settings = settings
        self.skipped: list[tuple[str, str]] = []  # (input path, reason), set by compute: the app's exit status
        self._scorer: BundleScorer | None = None  # built once, before the first series: the network loads once
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("study_selected_series_list")
        spec.output("scores")

    def compute(self, op_input, op_output, context) -> None:
        selected = _selected_series(op_input.receive("study_selected_series_list") or [])
        found = find_dicom_series(self.settings.prepared.folder)
        skipped: list[Skip] = list(found.skipped)
        if selected:  # outside the per-series catch: weights that do not load stop the job, they fail every series
            self._bundle_scorer()
        results = [r for series in selected if (r := self._score_or_skip(series, found, skipped)) is not None]
        _record_unselected(found, selected, skipped)
        self.skipped = self._input_paths(skipped)
        scores = {
            "settings": self._settings_json(),
            "series": results,
            "skipped": [dict(zip(SKIPPED_COLUMNS, item)) for item in self.skipped],
        }
        self._write(scores)
        if not selected:
            raise NothingToScoreError("no CT series selected: the input holds no DICOM series with Modality CT")
        if not results:
            raise NothingToScoreError(
                f"no series could be scored: {len(self.skipped)} items skipped, reasons in "
                f"{self.output_folder / SKIPPED_CSV}"
            )
        op_output.emit(scores, "scores")

    def _score_or_skip(self, series: DICOMSeries, found: DicomSeriesList, skipped: list[Skip]) -> dict | None:
        """The series' result, or None with the series listed in ``skipped``: one series never stops the others."""
        files = _source_files(series)
        try:
            return self._score(series, found, files, skipped)
        except DecoderMissingError:  # the environment, not the series: the job stops with what to install
            raise
        except _UnusableSeriesError as err:
            reason = str(err)
        except Exception as err:
            if os.environ.get(DEBUG_ENV):
                raise
            reason = f"scoring failed ({type(err).__name__}: {err})"
        record_skip(skipped, _folder(files), f"series {series.SeriesInstanceUID}: {reason}")
        return None

    def _score(self, series: DICOMSeries, found: DicomSeriesList, files: list[Path], skipped: list[Skip]) -> dict:
        bundle_series = next((s for s in found if s.series_instance_uid == series.SeriesInstanceUID), None)
        if bundle_series is None:  # e.g. a scout series: every file was skipped by the header checks
            raise _UnusableSeriesError(_no_slice_reason(files, found.skipped))
        if len(bundle_series) != len(files):  # e.g. a localizer inside the series: the bundle skips it, with a reason
            LOGGER.warning(
                "series %s: SDK loaded %d files, bundle reads %d slices", series, len(files), len(bundle_series)
            )
        rows = self._bundle_scorer().score_series(bundle_series, skipped)
        if not rows:
            raise _UnusableSeriesError(f"no usable CT slice ({len(bundle_series)} slices, each skipped)")
        result = series_result(rows, self.settings.threshold)
        prepared = self.settings.prepared
        for item in result["slices"] + result["flagged"]:  # the input files, not the filled copies
            item["source"] = str(prepared.original_path(item["source"]))
        uids = (result["study_instance_uid"], result["series_instance_uid"])
        result["derived_uids"] = {uid: prepared.derived_uids[uid] for uid in uids if uid in prepared.derived_uids}
        LOGGER.info(summary_text(result))
        return result

    def _bundle_scorer(self) -> BundleScorer:
        if self._scorer is None:
            s = self.settings
            self._scorer = BundleScorer.from_bundle(s.checkpoint, s.network_preset, s.device)
        return self._scorer

    def _input_paths(self, skipped: Iterable[Skip]) -> list[tuple[str, str]]:
        """Each skip once, named by the input file (not the filled copy the app may have loaded)."""
        prepared = self.settings.prepared
        return list(dict.fromkeys((str(prepared.original_path(path)), reason) for path, reason in skipped))

    def _write(self, scores: dict) -> None:
        atomic_write_json(self.output_folder / SCORES_JSON, scores)
        with atomic_path(self.output_folder / SKIPPED_CSV) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(SKIPPED_COLUMNS)
            writer.writerows(self.skipped)
        if self.skipped:
            LOGGER.warning("%d items skipped, reasons in %s", len(self.skipped), self.output_folder / SKIPPED_CSV)

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


def _no_slice_reason(files: Sequence[Path], header_skips: Sequence[Skip]) -> str:
    """Why the bundle found no slice in a series' files: their header-check reasons, each reason once."""
    mine = {Path(f).resolve() for f in files}
    reasons = dict.fromkeys(reason for path, reason in header_skips if Path(path).resolve() in mine)
    because = f" ({'; '.join(reasons)})" if reasons else ""
    return f"no usable CT slice in its {len(files)} file{'' if len(files) == 1 else 's'}{because}"


def _record_unselected(found: DicomSeriesList, selected: Sequence[DICOMSeries], skipped: list[Skip]) -> None:
    """CT series the bundle reads but the SDK did not pass on (its loader left their files out): listed, not lost."""
    chosen = {s.SeriesInstanceUID for s in selected}
    for series in found:
        if series.series_instance_uid not in chosen:
            reason = "not passed on by the SDK's DICOM loader and series selector (see their log)"
            record_skip(skipped, _bundle_folder(series), f"series {series.series_instance_uid}: {reason}")


def _bundle_folder(series: DicomSeries) -> Path:
    return _folder([s.path for s in series.slices])


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
        for result in scores["series"]:
            evidence = [
                sop.get_native_sop_instance() for sop in sources[result["series_instance_uid"]].get_sop_instances()
            ]
            sr = build_quality_sr(result, evidence, self.model_name, self.version)
            path = self.output_folder / f"tfkt_sr_{result['series_instance_uid']}.dcm"
            with atomic_path(path) as tmp:  # a PACS watching the folder never picks up half a file
                sr.save_as(tmp, enforce_file_format=True)
            LOGGER.info("wrote %s", path)
