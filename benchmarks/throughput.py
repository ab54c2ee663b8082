"""Print forward-pass throughput of the network presets on this machine (slices per second, CPU or GPU).

Usage (from the repository root): ``python benchmarks/throughput.py [--size 512] [--batches 1 4 8] [--presets ...]``
Measures the network alone (no I/O), in eval mode under ``torch.inference_mode``, after one warm-up batch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tfkt_bundle"))

from scripts.nets.networks import PRESETS, count_parameters, create_network  # noqa: E402


def slices_per_second(preset: str, size: int, batch: int, seconds: float, device: torch.device) -> float:
    net = create_network(preset).eval().to(device)
    x = torch.rand(batch, 1, size, size, device=device)
    with torch.inference_mode():
        net(x)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            net(x)
            done += batch
        if device.type == "cuda":
            torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "hybrid_tiny"])
    parser.add_argument("--seconds", type=float, default=5.0, help="timing window per setting")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch threads {torch.get_num_threads()}, slice {args.size}x{args.size}")
    for preset in args.presets:
        params = count_parameters(create_network(preset))
        for batch in args.batches:
            rate = slices_per_second(preset, args.size, batch, args.seconds, device)
            print(f"{preset:13s} {params:>12,d} params  batch {batch:2d}: {rate:7.2f} slices/s")


if __name__ == "__main__":
    main()
