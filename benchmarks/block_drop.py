"""Print what each skippable backbone block of the released network costs and contributes: the screening step
for a cheaper network at the same accuracy (drop blocks, then fine-tune or distil from the released weights).

Usage (from the repository root, after ``make venv``)::

    cd tfkt_bundle && python -m scripts.synthesis.training_sets --out /tmp/tfkt_set \\
        --ct-sources ../../shared/data/ct_sources && cd ..
    python benchmarks/block_drop.py --ct-set /tmp/tfkt_set/ct [--slices 80] [--calls 20] [--drop 4.1,4.2,5.3 ...]

The backbone's residual blocks (an identity skip around them, so the network still runs without one) are replaced
by the identity one at a time, with the released weights and no retraining. On ``--slices`` slices drawn from the
*training* split of a training CT set (the split ``configs/train.json`` makes; its validation patient and every
evaluation set stay untouched) it prints each block's share of the convolution multiply-adds at 512x512, the mean
change of the score, and SROCC against the labels and against the full network. Then the OpenVINO f32 rate (2
threads, one 512x512 slice a call, calls going round every variant in turn) of the full network and of each
``--drop`` set. Figures only; it never asserts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from accuracy import BUNDLE
from speed import interleaved_rates

from scripts.ctio.images import read_image_file
from scripts.data.datasets import read_iqa_dataset
from scripts.data.splits import group_key_of, make_split
from scripts.evaluation.metrics import srocc
from scripts.nets.networks import create_network
from scripts.nets.openvino_runtime import OpenVinoNetwork
from scripts.nets.weights import load_state_dict_file, without_dropped_blocks

DEFAULT_SETS = ("4.1,4.2,5.3", "3.2,4.1,4.2,5.2,5.3", "1.1,3.2,4.1,4.2,5.3", "1.1,2.1,3.2,4.1,4.2,5.2,5.3")


def residual_blocks(network: torch.nn.Module) -> list[str]:
    """``stage.block`` names of the backbone blocks with an identity skip (timm's ``has_skip``)."""
    stages = network.backbone.blocks
    return [f"{s}.{b}" for s, stage in enumerate(stages) for b, block in enumerate(stage) if block.has_skip]


def without(network: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """The default network with the named backbone blocks dropped (``drop_blocks``), keeping ``network``'s weights."""
    cheaper = create_network("hybrid_lite0", drop_blocks=names).eval()
    cheaper.load_state_dict(without_dropped_blocks(cheaper, network.state_dict()))
    return cheaper


def block_macs(network: torch.nn.Module, size: int = 512) -> dict[str, float]:
    """Convolution multiply-adds of one ``size`` x ``size`` slice, per ``stage.block`` and ``total``."""
    macs: dict[str, float] = {"total": 0.0}
    hooks = []
    for name, module in network.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            parts = name.split(".")
            key = f"{parts[2]}.{parts[3]}" if parts[:2] == ["backbone", "blocks"] else "other"

            def count(module, _, out, key=key):
                value = float(out.numel() * module.weight[0].numel())
                macs[key] = macs.get(key, 0.0) + value
                macs["total"] += value

            hooks.append(module.register_forward_hook(count))
    with torch.inference_mode():
        network(torch.zeros(1, 1, size, size))
    for hook in hooks:
        hook.remove()
    return macs


def training_slices(ct_set: Path, count: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """``count`` slices and their labels drawn from the training split of a training CT set's ``scores.csv``."""
    items = read_iqa_dataset("csv", ct_set / "scores.csv", score_range=[0, 4], higher_is_better=True, group_col="group")
    train, _ = make_split(items, val_fraction=0.1, n_folds=None, fold=0, seed=seed, group_key=group_key_of(items))
    chosen = np.random.default_rng(seed).choice(len(train), min(count, len(train)), replace=False)
    images = [torch.from_numpy(read_image_file(train[i]["image"]).astype(np.float32)) for i in sorted(chosen)]
    labels = np.array([train[i]["label"] for i in sorted(chosen)], dtype=np.float64)
    return torch.stack(images)[:, None], labels


def _scores(network: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([network(images[i : i + 8]) for i in range(0, len(images), 8)]).squeeze(1).numpy()


def sensitivity(
    network: torch.nn.Module, macs: dict[str, float], images: torch.Tensor, labels: np.ndarray
) -> list[dict]:
    full = _scores(network, images)
    rows = [
        {"drop": "none", "mac_share": 0.0, "mean_change": 0.0, "srocc_labels": srocc(full, labels), "srocc_full": 1.0}
    ]
    print(f"  full network: SROCC labels {rows[0]['srocc_labels']:.3f}")
    for name in residual_blocks(network):
        scores = _scores(without(network, [name]), images)
        row = {
            "drop": name,
            "mac_share": macs[name] / macs["total"],
            "mean_change": float(np.abs(scores - full).mean()),
            "srocc_labels": srocc(scores, labels),
            "srocc_full": srocc(scores, full),
        }
        rows.append(row)
        print(
            f"  {name:6s} {100 * row['mac_share']:5.1f} % MACs  change {row['mean_change']:.3f}  "
            f"SROCC labels {row['srocc_labels']:.3f}  full {row['srocc_full']:.3f}",
            flush=True,
        )
    return rows


def rates(network: torch.nn.Module, macs: dict[str, float], drop_sets: list[str], calls: int) -> list[dict]:
    x = torch.rand(1, 1, 512, 512)
    variants, shares = {}, {}
    for drop in ["", *drop_sets]:
        names = [name for name in drop.split(",") if name]
        runner = OpenVinoNetwork(without(network, names), threads=2)
        runner(x)
        variants[drop or "none"] = ((lambda runner=runner: runner(x)), 1)
        shares[drop or "none"] = sum(macs[name] for name in names) / macs["total"]
    rows = []
    measured = interleaved_rates(variants, calls)
    for drop, rate in measured.items():
        rows.append({"drop": drop, "mac_share": shares[drop], "slices_per_s": rate, "ratio": rate / measured["none"]})
        print(f"  drop {drop:30s} {100 * shares[drop]:5.1f} % MACs  {rate:6.1f} slices/s  {rows[-1]['ratio']:.2f}x")
    return rows


def training_set_parser(doc: str, slices: int, calls: int) -> argparse.ArgumentParser:
    """The options of a benchmark that runs the released network on a training CT set's slices and times it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--ct-set", type=Path, required=True, help="a training CT set folder (scores.csv, image/)")
    parser.add_argument("--checkpoint", type=Path, default=BUNDLE / "models" / "model.pt")
    parser.add_argument("--slices", type=int, default=slices)
    parser.add_argument("--calls", type=int, default=calls)
    parser.add_argument("--json", type=Path)
    return parser


def released_on_training_slices(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """The network with ``--checkpoint``'s weights on 2 threads, and ``--slices`` training slices with labels."""
    if not (args.ct_set / "scores.csv").is_file():
        raise SystemExit(f"{args.ct_set / 'scores.csv'} not found: build a training CT set first (see --help)")
    torch.set_num_threads(2)
    network = create_network("hybrid_lite0").eval()
    network.load_state_dict(load_state_dict_file(args.checkpoint))
    return network, *training_slices(args.ct_set, args.slices)


def main() -> None:
    parser = training_set_parser(__doc__, slices=80, calls=20)
    parser.add_argument("--drop", nargs="+", default=list(DEFAULT_SETS), help="comma-separated stage.block sets")
    args = parser.parse_args()
    network, images, labels = released_on_training_slices(args)
    print(f"{len(images)} training-split slices of {args.ct_set}; one residual block dropped at a time:")
    macs = block_macs(network)
    results = {"sensitivity": sensitivity(network, macs, images, labels)}
    print("\nOpenVINO f32, 2 threads, 512x512, one slice a call:")
    results["rates"] = rates(network, macs, args.drop, args.calls)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
