"""Per-slice scoring of one DICOM CT series with tfkt_bundle, SDK-free (the Deploy operators wrap it).

The slices are read, sorted and decoded by the bundle's own DICOM reader (``scripts.ctio``) and shaped by the
``preprocessing`` of the bundle's ``configs/inference.json``, then scored by its ``network_def`` and ``inferer``: the
same code path as ``tfkt-score`` / ``tfkt-bundle run inference``, so the scores are the same, slice for slice.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from tfkt_bundle_path import BUNDLE_ROOT  # first: it makes `scripts` importable in a MAP too

from scripts.clinical.summary import summarize_series
from scripts.ctio.dicom import DicomSeries, Skip
from scripts.ctio.dicom_pixels import iter_series_slices
from scripts.ctio.slices import finite_slices, slice_identity
from scripts.nets.weights import load_state_dict_file

__all__ = ["BUNDLE_ROOT", "BundleScorer", "series_result"]

LOGGER = logging.getLogger(__name__)

# What the JSON lists per slice (a subset of scripts.ctio.slices.SLICE_KEYS, plus the score).
SLICE_FIELDS = ("sop_instance_uid", "instance_number", "z", "slice_index", "frame", "source")


@dataclass
class BundleScorer:
    """The bundle's inference pieces, parsed from its config: slice dict -> score."""

    preprocessing: Callable[[dict], dict]
    network: torch.nn.Module
    inferer: Callable
    device: torch.device

    @classmethod
    def from_bundle(
        cls, checkpoint: Path, network_preset: str | None = None, device: str = "auto", bundle_root: Path = BUNDLE_ROOT
    ) -> BundleScorer:
        """Parse ``preprocessing``, ``network_def`` and ``inferer`` of ``configs/inference.json``; load the weights."""
        parser = ConfigParser()
        parser.read_config(str(bundle_root / "configs" / "inference.json"))
        parser["imports"] = _importable(parser["imports"])
        parser["bundle_root"] = str(bundle_root)
        if network_preset:
            parser["network_preset"] = network_preset
        torch_device = _device(device)
        network = parser.get_parsed_content("network_def").to(torch_device)
        _load_weights(network, checkpoint)
        network.eval()
        return cls(
            parser.get_parsed_content("preprocessing"), network, parser.get_parsed_content("inferer"), torch_device
        )

    @torch.inference_mode()
    def score_series(self, series: DicomSeries, skipped: list[Skip] | None = None) -> list[dict]:
        """Rows as the bundle's ``PredictionReport`` writes them: ``name``, ``prediction`` and the SLICE_KEYS.

        Slices that fail to decode, or hold NaN or infinite values, are left out as ``tfkt-score`` leaves them out:
        each (path, reason) appended to ``skipped`` (and logged); without ``skipped`` a NaN slice is a ValueError.
        """
        rows = []
        for index, (hu, info) in enumerate(finite_slices(iter_series_slices(series, skipped), skipped)):
            # The SliceStream item of the inference workflow, so its preprocessing (HU window first) applies as is.
            item = self.preprocessing({"image": hu, "is_hu": True, **slice_identity(info, index)})
            batch = torch.as_tensor(item["image"])[None].to(self.device)  # a DataLoader batch of one
            prediction = float(torch.as_tensor(self.inferer(batch, self.network)).reshape(-1)[0])
            rows.append({**{k: v for k, v in item.items() if k not in ("image", "is_hu")}, "prediction": prediction})
        return rows


def _importable(imports: Sequence[str]) -> list[str]:
    """The config's ``$import`` lines whose modules import here.

    The workflow also imports its reports and progress bar (ignite, matplotlib), which this environment leaves out;
    the pieces parsed here do not use them, and one that did would fail to parse, loudly.
    """
    kept = []
    for line in imports:
        module = line.removeprefix("$import ").split(" as ")[0].strip()
        try:
            importlib.import_module(module)
        except ImportError as err:
            LOGGER.debug("bundle import %s left out: %s", module, err)
            continue
        kept.append(line)
    return kept


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device("cuda:0" if device == "cuda" else device)


def _load_weights(network: torch.nn.Module, checkpoint: Path) -> None:
    """A plain state dict or a checkpoint wrapping one (the bundle's own reader: tensors only, weights_only)."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist (set TFKT_CHECKPOINT or pass -m)")
    network.load_state_dict(load_state_dict_file(checkpoint), strict=True)


def series_result(rows: Sequence[dict], threshold: float) -> dict:
    """The JSON of one scored series: identifiers, per-slice scores, mean, and the slices below ``threshold``."""
    summary = summarize_series(rows, threshold)[0]
    slices = [{**_slice_fields(row), "score": row["prediction"]} for row in rows]
    flagged = [{**_slice_fields(ref), "score": ref["score"]} for ref in summary["below"]]
    return {
        "series_instance_uid": summary["series_instance_uid"],
        "study_instance_uid": summary["study_instance_uid"],
        "series_description": str(rows[0].get("series_description") or ""),
        "n_slices": summary["n_slices"],
        "mean": summary["mean"],
        "median": summary["median"],
        "min": summary["min"],
        "max": summary["max"],
        "threshold": summary["threshold"],
        "n_flagged": len(flagged),
        "flagged": flagged,
        "slices": slices,
    }


def _slice_fields(row: dict) -> dict:
    """JSON-ready slice identifiers: an absent number (NaN) is null; counters (instance number, index, frame) ints."""
    fields = {}
    for key in SLICE_FIELDS:
        value = row.get(key)
        if isinstance(value, float):
            value = None if not math.isfinite(value) else (value if key == "z" else int(value))
        fields[key] = value
    return fields
