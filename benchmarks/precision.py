"""Print whether reduced precision changes the accuracy: one checkpoint in eager fp32 and OpenVINO f32, mixed, bf16.

Usage (from the repository root): ``python benchmarks/precision.py [--model NAME=PRESET:CHECKPOINT] [--work DIR]``

Scores the sets of ``benchmarks/accuracy.py`` (the held-out simulated set built from the shared abdomen series, the
demo's held-out CT test set, and the ten real LDCTIQAC samples where present) with the network run three ways and
prints, per set, SROCC and PLCC against the labels and the largest score difference from eager fp32. Two eager
controls locate where bf16 changes the scores: the fp32 network fed a slice rounded to bf16, and torch's bf16
autocast. "mixed" is the front in f32 and the rest in bf16 (``scripts.nets.openvino_runtime``), the default where the
CPU has native bf16: the bundle runs a reduced precision by default only if it keeps SROCC within 0.005 of fp32 on
every set here. Figures only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from accuracy import DEFAULT_WORK, RELEASED_MODEL, SHARED, ModelSpec, load_sets, pooled

from scripts.ctio.images import read_image_file
from scripts.nets.networks import create_network
from scripts.nets.openvino_runtime import OpenVinoNetwork
from scripts.nets.weights import load_state_dict_file


def _bf16_input(network: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda image: network(image.bfloat16().float())


def _bf16_autocast(network: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(image: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return network(image)

    return run


MODES: dict[str, Callable[[torch.nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    "torch fp32": lambda network: network,
    "torch, bf16 input": _bf16_input,
    "torch bf16 autocast": _bf16_autocast,
    "OpenVINO f32": lambda network: OpenVinoNetwork(network, precision="f32"),
    "OpenVINO mixed": lambda network: OpenVinoNetwork(network, precision="mixed"),
    "OpenVINO bf16": lambda network: OpenVinoNetwork(network, precision="bf16"),
}


def _predict(network: Callable[[torch.Tensor], torch.Tensor], items: Sequence[Mapping]) -> np.ndarray:
    with torch.inference_mode():
        return np.asarray([float(network(torch.from_numpy(read_image_file(i["image"]))[None, None])) for i in items])


def compare(spec: ModelSpec, sets: Mapping[str, list[dict]]) -> dict:
    network = create_network(spec.preset)
    network.load_state_dict(load_state_dict_file(spec.checkpoint))
    network.eval()
    results: dict = {}
    for set_name, items in sets.items():
        preds = {mode: _predict(make(network), items) for mode, make in MODES.items()}
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
    parser.add_argument("--model", type=ModelSpec.parse, default=ModelSpec.parse(RELEASED_MODEL))
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sets = load_sets(args.work, SHARED / "ct_series_abdomen")
    results = compare(args.model, sets)
    print(f"{'set':18s} {'mode':20s} {'n':>4s} {'SROCC':>7s} {'PLCC':>7s} {'max |d| vs fp32':>16s}")
    for set_name, by_mode in results.items():
        for mode, m in by_mode.items():
            figures = f"{m['srocc']:7.4f} {m['plcc']:7.4f} {m['max_abs_diff_from_fp32']:16.4f}"
            print(f"{set_name:18s} {mode:20s} {len(sets[set_name]):4d} {figures}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
