"""Print whether int8 would keep the accuracy, and how fast it runs: OpenVINO f32 against NNCF post-training int8.

Usage (from the repository root, after ``make venv``; needs NNCF, which the bundle itself does not use:
``pip install nncf==3.4.0``)::

    cd tfkt_bundle && python -m scripts.synthesis.training_sets --quick --out /tmp/ct_set \\
        --ct-sources ../../shared/data/ct_sources && cd ..
    python benchmarks/int8.py --calibration /tmp/ct_set/ct [--model NAME=PRESET:CHECKPOINT] [--json OUT.json]

The network (exported to ONNX as ``scripts.nets.openvino_runtime`` does) is quantized by ``nncf.quantize`` with
statistics from ``--images`` slices of a *training* CT set (never an evaluation set): once with every layer int8, once
with the stem convolution left in f32, since the precision benchmark found that rounding the input slice alone moves
the scores. Then, side by side in one run: SROCC/PLCC of each on the evaluation sets of ``benchmarks/accuracy.py`` and
the largest score change from f32, and the median time per 512x512 slice at 1 and 2 threads. The bundle would offer
int8 only if it kept SROCC within 0.005 of f32 on every set. Figures only; it never asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from accuracy import DEFAULT_WORK, RELEASED_MODEL, SHARED, ModelSpec, load_sets, pooled

from scripts.ctio.images import read_image_file
from scripts.nets.networks import create_network
from scripts.nets.openvino_runtime import onnx_bytes, openvino_core
from scripts.nets.weights import load_state_dict_file

VARIANTS = ("int8", "int8, stem f32")


def _nncf():
    try:
        import nncf
        import openvino  # noqa: F401 - nncf quantizes OpenVINO models
    except ImportError as err:
        raise SystemExit(f"benchmarks/int8.py needs openvino and nncf ({err}): pip install nncf==3.4.0") from err
    return nncf


def read_model(network: torch.nn.Module, size: int = 512):
    """The network as an OpenVINO model, through the same ONNX export as the bundle's OpenVINO backend."""
    _nncf()
    return openvino_core().read_model(onnx_bytes(network, torch.zeros(1, 1, size, size)), b"")


def quantize(model, calibration: Sequence[np.ndarray], keep_stem: bool):
    """``model`` with int8 weights and activations (NNCF defaults), the first convolution left in f32 if asked."""
    nncf = _nncf()
    options = {"subset_size": len(calibration)}
    if keep_stem:
        first = next(op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
        options["ignored_scope"] = nncf.IgnoredScope(names=[first])
    return nncf.quantize(model, nncf.Dataset(list(calibration)), **options)


def compile_model(model, threads: int):
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    return openvino_core().compile_model(model, "CPU", config)


def calibration_slices(folder: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` (1, 1, H, W) float32 slices drawn at random from the images of a training CT set."""
    files = sorted(p for p in (folder / "image").iterdir() if p.suffix in (".tif", ".tiff"))
    if not files:
        raise SystemExit(f"{folder / 'image'} holds no .tif images: build a training CT set first (see --help)")
    chosen = np.random.default_rng(seed).choice(len(files), min(count, len(files)), replace=False)
    return [read_image_file(files[i])[None, None].astype(np.float32) for i in sorted(chosen)]


def _ms_per_slice(compiled, x: np.ndarray, calls: int = 30) -> float:
    for _ in range(3):
        compiled(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        compiled(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=Path, required=True, help="a training CT set (holds image/*.tif)")
    parser.add_argument("--images", type=int, default=200, help="calibration slices")
    parser.add_argument("--model", type=ModelSpec.parse, default=ModelSpec.parse(RELEASED_MODEL))
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    network = create_network(args.model.preset).eval()
    network.load_state_dict(load_state_dict_file(args.model.checkpoint))
    model = read_model(network)
    calibration = calibration_slices(args.calibration, args.images)
    models = {"f32": model, **{name: quantize(model, calibration, keep_stem="stem" in name) for name in VARIANTS}}
    results: dict = {"speed_ms": {}, "accuracy": {}}
    compiled = {}  # at 2 threads, kept for the accuracy sets
    for name, m in models.items():
        by_threads = {threads: compile_model(m, threads) for threads in (1, 2)}
        speed = {threads: _ms_per_slice(c, calibration[0]) for threads, c in by_threads.items()}
        results["speed_ms"][name] = speed
        compiled[name] = by_threads[2]
        print(f"{name:16s} " + "  ".join(f"{t} thread(s) {ms:5.1f} ms" for t, ms in speed.items()))
    sets = load_sets(args.work, SHARED / "ct_series_abdomen")
    print(f"{'set':18s} {'model':16s} {'n':>4s} {'SROCC':>7s} {'d SROCC':>8s} {'PLCC':>7s} {'max |d| vs f32':>15s}")
    for set_name, items in sets.items():
        slices = [read_image_file(i["image"])[None, None].astype(np.float32) for i in items]
        preds = {name: np.array([float(c(s)[0].reshape(-1)[0]) for s in slices]) for name, c in compiled.items()}
        f32 = pooled(preds["f32"], items, 0)
        results["accuracy"][set_name] = {}
        for name, pred in preds.items():
            m = pooled(pred, items, 0)
            row = {"srocc": m["srocc"], "plcc": m["plcc"], "max_abs_diff": float(np.abs(pred - preds["f32"]).max())}
            results["accuracy"][set_name][name] = row
            print(
                f"{set_name:18s} {name:16s} {len(items):4d} {m['srocc']:7.4f} {m['srocc'] - f32['srocc']:+8.4f} "
                f"{m['plcc']:7.4f} {row['max_abs_diff']:15.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
