"""Print how many of the network's front stages must stay f32 when the rest runs in bf16: the choice of
``scripts.nets.openvino_runtime.FRONT_STAGES``, made on training data only.

Usage (from the repository root, after ``make venv``, on a CPU with AVX-512 BF16 or AMX)::

    cd tfkt_bundle && python -m scripts.synthesis.training_sets --out /tmp/tfkt_set \\
        --ct-sources ../../shared/data/ct_sources && cd ..
    python benchmarks/mixed_precision.py --ct-set /tmp/tfkt_set/ct [--slices 300] [--calls 30] [--json OUT.json]

bf16 keeps 8 bits of mantissa, the scale of the noise texture the model grades; rounding the input or the stem's
output to it moves scores by tenths. So the bundle's "mixed" precision runs the input normalisation, the stem and the
first N backbone stages in f32 and the rest in bf16 (``SpatialHybridIQA.split``). For N = 0 to 7 (and bf16
throughout), on ``--slices`` slices drawn from the *training* split of a training CT set (the split
``configs/train.json`` makes; evaluation sets stay untouched), with the released weights, it prints the largest,
mean and mean signed score change from OpenVINO f32 and the SROCC against the labels; then each one's rate as
``tfkt-score`` runs it (two 512x512 slices a call on two streams, 2 threads, calls going round every variant in
turn). The rule: the fewest f32 stages whose largest change stays within ``TOLERANCE``. Figures only; it never
asserts.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from block_drop import released_on_training_slices, training_set_parser
from speed import cpu_name, interleaved_rates

from scripts.evaluation.metrics import srocc
from scripts.nets.openvino_runtime import FRONT_STAGES, OpenVinoNetwork, cpu_has_bf16

TOLERANCE = 0.05  # on the 0-4 scale: about a hundredth of it, far below one step of the radiologists' scale


def _runners(network: torch.nn.Module) -> dict[str, OpenVinoNetwork]:
    stages = len(network.backbone.blocks)
    runners = {"f32": OpenVinoNetwork(network, "f32", threads=2, streams=2)}
    for n in range(stages + 1):
        runners[f"mixed, {n} f32 stages"] = OpenVinoNetwork(network, "mixed", threads=2, streams=2, front_stages=n)
    runners["bf16"] = OpenVinoNetwork(network, "bf16", threads=2, streams=2)
    return runners


def _scores(runner: OpenVinoNetwork, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([runner(images[i : i + 2]) for i in range(0, len(images), 2)]).squeeze(1).numpy()


def changes(runners: dict[str, OpenVinoNetwork], images: torch.Tensor, labels: np.ndarray) -> list[dict]:
    exact = _scores(runners["f32"], images)
    rows = []
    for name, runner in runners.items():
        delta = _scores(runner, images) - exact
        row = {
            "precision": name,
            "front_stages": runner.front_stages if runner.precision == "mixed" else None,
            "max_abs_change": float(np.abs(delta).max()),
            "mean_abs_change": float(np.abs(delta).mean()),
            "mean_change": float(delta.mean()),
            "srocc_labels": srocc(exact + delta, labels),
        }
        rows.append(row)
        print(
            f"  {name:22s} largest change {row['max_abs_change']:.4f}  mean {row['mean_abs_change']:.4f}  "
            f"signed {row['mean_change']:+.4f}  SROCC labels {row['srocc_labels']:.4f}",
            flush=True,
        )
    return rows


def rates(runners: dict[str, OpenVinoNetwork], calls: int) -> dict[str, float]:
    pair = torch.rand(2, 1, 512, 512)
    measured = interleaved_rates({name: ((lambda r=runner: r(pair)), 2) for name, runner in runners.items()}, calls)
    for name, rate in measured.items():
        print(f"  {name:22s} {rate:6.1f} slices/s  {rate / measured['f32']:.2f}x f32", flush=True)
    return measured


def main() -> None:
    args = training_set_parser(__doc__, slices=300, calls=30).parse_args()
    network, images, labels = released_on_training_slices(args)
    cpu = cpu_name()
    print(f"{cpu}; native bf16: {cpu_has_bf16()}")
    runners = _runners(network)
    print(f"\n{len(images)} training-split slices of {args.ct_set}, score change from OpenVINO f32:")
    rows = changes(runners, images, labels)
    within = [r["front_stages"] for r in rows if r["front_stages"] is not None and r["max_abs_change"] <= TOLERANCE]
    chosen = min(within, default=None)
    print(f"\nfewest f32 stages within {TOLERANCE}: {chosen} (the bundle's FRONT_STAGES: {FRONT_STAGES})")
    print("\nnetwork alone, 2 threads, two 512x512 slices a call on two streams:")
    measured = rates(runners, args.calls)
    for row in rows:
        row["slices_per_s"] = measured[row["precision"]]
    if args.json:
        results = {"cpu": cpu, "slices": len(images), "tolerance": TOLERANCE, "chosen": chosen, "rows": rows}
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
