"""The Ray Data worker of ``tfkt-score --engine ray``: one model per worker process, whole series per call.

:class:`SeriesScorer` builds the bundle's ``preprocessing``, ``network`` and ``inferer`` from
``configs/inference.json``, merged with the backend's ``inference_<backend>.json`` (ONNX Runtime, OpenVINO), once,
when its actor starts: a worker loads its model once and scores series after series. It returns per-slice rows,
the rows the inference workflow's ``PredictionReport`` collects, so the driver writes every output with the local
engine's writers and workers need no shared output folder. Nothing here imports Ray: Ray Data instantiates the
class in each actor.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from monai.bundle import ConfigParser

from scripts.command import inference_configs, model_overrides
from scripts.ctio.dicom import Skip
from scripts.ctio.slices import SLICE_KEYS, slice_identity
from scripts.data.stream import same_size_batches
from scripts.nets.weights import load_state_dict_file

from .jobs import SeriesJob, iter_job_slices

__all__ = ["ScorerSettings", "SeriesScorer", "encode_job", "decode_result"]


@dataclass(frozen=True)
class ScorerSettings:
    """What a worker needs to build the model: paths as every node of the cluster sees them.

    Attributes:
        bundle_root: the bundle folder (its ``configs``).
        checkpoint: the weights (``.pt``) or the ONNX file.
        backend: "torch", "onnx" or "openvino", as ``tfkt-score`` resolved it.
        device: "cpu" or "cuda" (the GPU Ray gave the worker, ``cuda:0`` inside it).
        batch_size: slices per network call (consecutive slices of one size, as the local engine batches).
        network_preset: network layout of the checkpoint (None: the config's).
        precision: OpenVINO's inference precision (``scripts.nets.openvino_runtime.PRECISIONS``).
    """

    bundle_root: str
    checkpoint: str
    backend: str = "torch"
    device: str = "cpu"
    batch_size: int = 1
    network_preset: str | None = None
    precision: str = "auto"


class SeriesScorer:
    """Ray Data callable class: ``{"job": [pickled SeriesJob]}`` -> ``{"series", "rows", "skipped"}`` (JSON)."""

    def __init__(self, settings: ScorerSettings) -> None:
        self.settings = settings
        self.device = torch.device("cuda:0" if settings.device == "cuda" else "cpu")
        parser = _bundle_config(settings, self.device)
        self.preprocessing: Callable[[dict], dict] = parser.get_parsed_content("preprocessing")
        self.inferer: Callable = parser.get_parsed_content("inferer")
        network = parser.get_parsed_content("network")
        if settings.backend != "onnx":  # an ONNX network reads its own file; OpenVINO converts the loaded network
            network.load_state_dict(load_state_dict_file(settings.checkpoint), strict=True)
            network.eval()
        self.network = parser.get_parsed_content("evaluator#network")  # what the workflow's evaluator runs

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.score_job(pickle.loads(job)) for job in batch["job"]]
        return {
            "series": np.array([job_key for job_key, _, _ in results], dtype=object),
            "rows": np.array([json.dumps(rows) for _, rows, _ in results], dtype=object),
            "skipped": np.array([json.dumps(skipped) for _, _, skipped in results], dtype=object),
        }

    def score_job(self, job: SeriesJob) -> tuple[str, list[dict], list[tuple[str, str]]]:
        """(series key, per-slice rows, skipped (path, reason)) of one series."""
        skipped: list[Skip] = []
        rows = []
        for items in same_size_batches(self._items(job, skipped), self.settings.batch_size):
            rows.extend(self._score(items))
        return job.key, rows, [(str(path), str(reason)) for path, reason in skipped]

    def _items(self, job: SeriesJob, skipped: list[Skip]) -> Iterator[dict]:
        """The workflow's SliceStream items of the job, through the workflow's preprocessing."""
        for index, (array, info) in enumerate(iter_job_slices(job, skipped)):
            yield self.preprocessing({"image": array, "is_hu": bool(info["is_hu"]), **slice_identity(info, index)})

    @torch.inference_mode()
    def _score(self, items: list[dict]) -> list[dict]:
        images = torch.stack([torch.as_tensor(item["image"]) for item in items]).to(self.device)
        predictions = torch.as_tensor(self.inferer(images, self.network)).reshape(len(items), -1)[:, 0]
        return [
            {"name": str(item["name"]), "prediction": float(p), **{key: item.get(key) for key in SLICE_KEYS}}
            for item, p in zip(items, predictions.cpu().tolist())
        ]


def _bundle_config(settings: ScorerSettings, device: torch.device) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(f) for f in inference_configs(settings.backend, settings.bundle_root)])
    parser["bundle_root"] = settings.bundle_root
    parser["device"] = f"$torch.device('{device}')"
    overrides = model_overrides(settings.backend, settings.checkpoint, settings.network_preset, settings.precision)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def encode_job(job: SeriesJob) -> dict:
    """A Ray Data row for a job: its key (readable in Ray's logs) and the job, pickled."""
    return {"series": job.key, "job": pickle.dumps(job)}


def decode_result(row: dict) -> tuple[list[dict], list[tuple[str, str]]]:
    """The rows and skipped items of one scored series from the worker's answer."""
    return json.loads(row["rows"]), [tuple(item) for item in json.loads(row["skipped"])]
