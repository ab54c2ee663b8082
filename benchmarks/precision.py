"""Print whether reduced precision changes the accuracy: one checkpoint in eager fp32, OpenVINO f32 and OpenVINO bf16.

Usage (from the repository root): ``python benchmarks/precision.py [--model NAME=PRESET:CHECKPOINT] [--work DIR]``

Scores the sets of ``benchmarks/accuracy.py`` (the held-out simulated set built from the shared abdomen series, the
demo's held-out CT test set, and the ten real LDCTIQAC samples where present) with the network run three ways and
prints, per set, SROCC and PLCC against the labels and the largest score difference from eager fp32. The bundle runs
OpenVINO bf16 by default on a CPU only because this comparison keeps SROCC within 0.005 of fp32. Figures only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from accuracy import DEFAULT_MODEL, DEFAULT_WORK, SHARED, ModelSpec, load_sets, pooled

from scripts.ctio.images import read_image_file
from scripts.nets.networks import create_network
from scripts.nets.openvino_runtime import OpenVinoNetwork
from scripts.nets.weights import load_state_dict_file

MODES = {"torch fp32": None, "OpenVINO f32": "f32", "OpenVINO bf16": "bf16"}


def _predict(network: torch.nn.Module, items: Sequence[Mapping]) -> np.ndarray:
    with torch.inference_mode():
        return np.asarray([float(network(torch.from_numpy(read_image_file(i["image"]))[None, None])) for i in items])


def compare(spec: ModelSpec, sets: Mapping[str, list[dict]]) -> dict:
    network = create_network(spec.preset)
    network.load_state_dict(load_state_dict_file(spec.checkpoint))
    network.eval()
    results: dict = {}
    for set_name, items in sets.items():
        preds = {
            mode: _predict(network if p is None else OpenVinoNetwork(network, precision=p), items)
            for mode, p in MODES.items()
        }
        results[set_name] = {
            mode: {
                **{k: pooled(pred, items, 0)[k] for k in ("srocc", "plcc")},
                "max_abs_diff_from_fp32": float(np.abs(pred - preds["torch fp32"]).max()),
            }
            for mode, pred in preds.items()
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=ModelSpec.parse, default=ModelSpec.parse(DEFAULT_MODEL))
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sets = {k: v for k, v in load_sets(args.work, SHARED / "ct_series_abdomen").items() if k != "heldout_noise"}
    results = compare(args.model, sets)
    print(f"{'set':18s} {'mode':14s} {'n':>4s} {'SROCC':>7s} {'PLCC':>7s} {'max |d| vs fp32':>16s}")
    for set_name, by_mode in results.items():
        for mode, m in by_mode.items():
            figures = f"{m['srocc']:7.4f} {m['plcc']:7.4f} {m['max_abs_diff_from_fp32']:16.4f}"
            print(f"{set_name:18s} {mode:14s} {len(sets[set_name]):4d} {figures}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
