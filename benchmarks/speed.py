"""Print how fast the bundle scores CT on this machine: end to end with ``tfkt-score``, and the network alone.

Usage (from the repository root, after ``make venv``):
``python benchmarks/speed.py [--checkpoint PATH] [--series DIR] [--slices 200] [--repeats 3] [--long 1000]
[--candidate PRESET:CHECKPOINT] [--default-only] [--json OUT.json] [--plot OUT.png]``

End to end: from one DICOM series (default: the shared 20-slice JPEG 2000 abdomen series) it builds a short
series (the source) and a ``--slices`` series (the source repeated along z, new UIDs), each as stored (J2K) and
decompressed, then runs ``tfkt-score`` on each in a child process per setting, ``--repeats`` times in turn: the
default (OpenVINO, ``--precision auto``: mixed f32/bf16 where the CPU has native bf16, else f32; one decoding worker
and the network on the other cores for JPEG 2000, decoding inline and the network on every core for uncompressed
series) beside each of those choices made the other way, the 0.8.4 default, and bf16 and eager PyTorch.
The marginal rate, ``(long - short) / (t_long - t_short)``, leaves out start-up (imports, model load and
conversion, the report); start-up is ``t_short`` less the short series' share at that rate. Peak RSS is the
child's own ``ru_maxrss``. ``--long N`` adds one N-slice run for memory. One setting runs the default with pydicom's
own decoder order (GDCM first for JPEG 2000, as up to bundle 0.8.2) beside the bundle's. Reading alone: the core time
a decoding worker spends per slice of each long series, and what 30 slices/s on two cores leaves for the network.
Decoding alone: wall and core time per slice for each JPEG 2000 plugin, the plugins taking turns.

Network alone (no I/O, 512x512, median over calls that go round every variant in turn): each precision and format
the bundle can run, one slice per call (as tfkt-score runs it by default), OpenVINO also with two slices a call on
two streams, and the published ``tfkt_v2`` layout, with the ratio of the default as tfkt-score runs it on this
machine to it. On a GPU the same script times
``--device cuda`` and AMP. ``--candidate`` times another network (a cheaper preset with its own weights) beside the
default, end to end and alone; ``--default-only`` keeps just those runs. Figures only: it never asserts; the machine
is shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import stress
import torch

sys.path.insert(0, str(stress.ROOT / "tfkt_bundle"))

from scripts.ctio.slices import iter_ct_slices  # noqa: E402
from scripts.ctio.window import DEFAULT_HU_WINDOW  # noqa: E402
from scripts.nets.networks import create_network  # noqa: E402
from scripts.nets.openvino_runtime import OpenVinoNetwork, onnx_bytes, openvino_core, resolved_precision  # noqa: E402
from scripts.nets.weights import load_state_dict_file  # noqa: E402

DEFAULT_CHECKPOINT = stress.ROOT / "tfkt_bundle" / "models" / "model.pt"
CUDA = torch.cuda.is_available()
OPENVINO = importlib.util.find_spec("openvino") is not None  # the optional 'export' extra


def _decompressed(source: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        ds = pydicom.dcmread(path)
        ds.decompress()
        ds.save_as(out / path.name)
    return out


def build_series(source: Path, root: Path, slices: int) -> dict[str, dict[str, tuple[Path, int]]]:
    """{"j2k"|"raw": {"short"|"long": (folder, n slices)}} built from ``source``."""
    datasets = stress.read_series(source)
    built = {"j2k": {}, "raw": {}}
    for name, n in (("short", len(datasets)), ("long", slices)):
        folder = root / f"j2k_{name}"
        built["j2k"][name] = (folder, stress.build_long_series(datasets, folder, n))
        built["raw"][name] = (_decompressed(folder, root / f"raw_{name}"), n)
    return built


# tfkt-score with pydicom's own plugin order, as up to bundle 0.8.2: GDCM first for JPEG 2000, on every core.
GDCM_FIRST = [
    sys.executable,
    "-c",
    "import sys, scripts.ctio.dicom_pixels as p; p.PREFERRED_PLUGINS.clear(); "
    "from scripts.score import main; sys.exit(main())",
]
LAUNCHERS = {"openvino auto, GDCM first": GDCM_FIRST}
DEFAULT_SETTING = "openvino auto, default workers and threads (default)"
# Network alone, for --candidate.
CANDIDATE_MODES = ("torch fp32", "OpenVINO f32", "OpenVINO mixed")


def end_to_end(
    series: dict,
    root: Path,
    checkpoint: Path,
    settings: dict[str, list[str]],
    repeats: int,
    models: dict[str, tuple[str, Path]] | None = None,
) -> list:
    """Median marginal rate, start-up and peak RSS per (compression, setting); the repeats go round every setting in
    turn, so that a slow spell of the shared machine falls on all of them rather than on one. ``models`` gives a
    setting its own (network preset, checkpoint) instead of the default network and ``checkpoint``."""
    models = models or {}
    runs = [(compression, label) for compression in series for label in settings]
    times = {run: {"short": [], "long": []} for run in runs}
    peaks = dict.fromkeys(runs, 0.0)
    for r in range(repeats):
        for compression, label in runs:
            for size, (folder, _) in series[compression].items():
                out = root / f"out_{compression}_{label}_{size}_{r}".replace(" ", "_").replace(",", "")
                preset, weights = models.get(label, (None, checkpoint))
                result = stress.score(folder, out, weights, preset, settings[label], LAUNCHERS.get(label))
                times[compression, label][size].append(result["wall_s"])
                peaks[compression, label] = max(peaks[compression, label], result["peak_gib"])
    rows = []
    for compression, label in runs:
        (n_short, n_long) = (series[compression]["short"][1], series[compression]["long"][1])
        t_short, t_long = (statistics.median(times[compression, label][s]) for s in ("short", "long"))
        # NaN where the long run was not slower than the short one: too few slices for start-up's noise.
        rate = (n_long - n_short) / (t_long - t_short) if t_long > t_short else float("nan")
        row = {
            "series": compression,
            "setting": label,
            "slices_per_s": rate,
            "startup_s": t_short - n_short / rate,
            "wall_long_s": t_long,
            "peak_gib": peaks[compression, label],
        }
        rows.append(row)
        print(
            f"  {compression:4s} {label:58s} {rate:7.1f} slices/s  start-up {row['startup_s']:5.1f} s  "
            f"{n_long} slices {t_long:6.1f} s  peak {row['peak_gib']:.2f} GiB",
            flush=True,
        )
    return rows


def decode_only(source: Path, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Per slice of ``source``, with each pixel-data plugin pydicom has for its syntax: median wall milliseconds and
    core milliseconds (process CPU time, every thread: GDCM splits a JPEG 2000 slice over all cores). The plugins
    take turns slice by slice, ``rounds`` times over the series."""
    from pydicom.pixels import get_decoder

    files = sorted(p for p in source.iterdir() if p.is_file())
    syntax = pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    plugins = get_decoder(syntax).available_plugins
    wall: dict[str, list[float]] = {plugin: [] for plugin in plugins}
    core = dict.fromkeys(plugins, 0.0)
    for path in files * rounds:
        for plugin in plugins:
            ds = pydicom.dcmread(path)
            ds.pixel_array_options(decoding_plugin=plugin)
            start, cpu = time.perf_counter(), time.process_time()
            ds.pixel_array  # noqa: B018 - the decode is the point
            wall[plugin].append(time.perf_counter() - start)
            core[plugin] += time.process_time() - cpu
    timings = {}
    for plugin in plugins:
        timings[plugin] = {
            "wall_ms": 1000 * statistics.median(wall[plugin]),
            "cpu_ms": 1000 * core[plugin] / len(wall[plugin]),
        }
        print(
            f"  {syntax.name}, {plugin}: {timings[plugin]['wall_ms']:.1f} ms per slice, "
            f"{timings[plugin]['cpu_ms']:.1f} core-ms",
            flush=True,
        )
    return timings


def reader_only(series: dict, rounds: int = 2) -> dict[str, float]:
    """Core milliseconds per slice of everything a decoding worker does (headers, pixels, HU, window, checks) on
    each compression's long series, median of ``rounds``, beside what 30 slices/s on two cores leaves for the rest."""
    core_ms = {}
    for compression, sizes in series.items():
        folder, _ = sizes["long"]
        times = []
        for _ in range(rounds):
            cpu = time.process_time()
            count = sum(1 for _ in iter_ct_slices(folder, hu_window=DEFAULT_HU_WINDOW))
            times.append(1000 * (time.process_time() - cpu) / count)
        core_ms[compression] = statistics.median(times)
        left = 2000 / 30 - core_ms[compression]
        print(
            f"  {compression}: {core_ms[compression]:.1f} core-ms per slice; at 30 slices/s on 2 cores "
            f"{left:.1f} core-ms are left for the network and the main process",
            flush=True,
        )
    return core_ms


def cpu_name() -> str:
    """The CPU model and the matrix/vector extensions that decide which precisions are fast (Linux; else the
    platform's processor string): results from different machines are only comparable beside this."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return platform.processor() or platform.machine()
    text = info.read_text()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    extensions = [name for name in ("avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if name in flags]
    return f"{model or platform.machine()} ({', '.join(extensions) or 'no AVX-512 BF16/VNNI, no AMX'})"


def interleaved_rates(variants: dict, calls: int) -> dict:
    """Slices/s of each ``name: (call, slices per call)``: the median call, the calls going round every variant in
    turn, so that a slow spell of the shared machine falls on all of them rather than on one."""
    times: dict = {name: [] for name in variants}
    with torch.inference_mode():
        for fn, _ in variants.values():
            for _ in range(3):
                fn()
        for _ in range(calls):
            for name, (fn, _) in variants.items():
                fn()  # untimed: the previous variant's thread pool may still spin on the cores for a while
                start = time.perf_counter()
                fn()
                if CUDA:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    return {name: slices / statistics.median(times[name]) for name, (_, slices) in variants.items()}


def _variants(network: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[Callable[[], object], int]]:
    """Every way the bundle can run the network, keyed by a short name: (one call, slices it scores)."""
    if CUDA:
        net_cuda, x_cuda = network.cuda(), x.cuda()

        def amp():
            with torch.autocast("cuda", dtype=torch.float16):
                return net_cuda(x_cuda)

        return {"cuda fp32": (lambda: net_cuda(x_cuda), 1), "cuda amp fp16": (amp, 1)}
    variants = {"torch fp32": lambda: network(x)}
    channels_last = copy.deepcopy(network).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    variants["torch channels-last"] = lambda: channels_last(x_cl)

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return channels_last(x_cl)

    variants["torch bf16 + channels-last"] = bf16
    with torch.enable_grad():
        scripted = torch.jit.freeze(torch.jit.trace(network, x, check_trace=False).eval())
    variants["TorchScript frozen fp32"] = lambda: scripted(x)
    model = onnx_bytes(network, x)
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        variants["ONNX Runtime fp32"] = lambda: session.run(None, {"image": x.numpy()})
    except ImportError:
        print("  (onnxruntime not installed: skipped)")
    variants = {name: (fn, 1) for name, fn in variants.items()}
    if not OPENVINO:
        print("  (openvino not installed: skipped)")
        return variants
    threads, pair = torch.get_num_threads(), x.repeat(2, 1, 1, 1)
    for precision in ("f32", "mixed", "bf16"):
        one = OpenVinoNetwork(network, precision, threads=threads)
        variants[f"OpenVINO {precision}"] = (lambda one=one: one(x), 1)
    # Two slices a call, one stream each (tfkt-score --batch-size 2, the default up to 0.8.4).
    for precision in ("f32", "mixed"):
        streams = OpenVinoNetwork(network, precision, threads=threads, streams=2)
        variants[f"OpenVINO {precision}, 2 streams"] = (lambda streams=streams: streams(pair), 2)
    return variants


def default_mode(network: torch.nn.Module) -> str:
    """The network-alone variant at ``tfkt-score``'s default precision on this machine, one slice a call."""
    if CUDA:
        return "cuda amp fp16"
    if not OPENVINO:
        return "torch fp32"
    return f"OpenVINO {resolved_precision('auto', network)}"


def _network(checkpoint: Path | None, preset: str = "hybrid_lite0") -> torch.nn.Module:
    """A network (the default unless ``preset`` says) in eval mode, with ``checkpoint``'s weights when given (else
    random ones)."""
    network = create_network(preset).eval()
    if checkpoint is not None:
        network.load_state_dict(load_state_dict_file(checkpoint))
    return network


def openvino_layers(checkpoint: Path | None, size: int, calls: int) -> list[dict]:
    """Where OpenVINO f32 spends a slice: milliseconds per (layer type, kernel), its own profile, median call."""
    network = _network(checkpoint)
    core = openvino_core()
    model = core.read_model(onnx_bytes(network, torch.zeros(1, 1, size, size)), b"")
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True}
    request = core.compile_model(model, "CPU", config).create_infer_request()
    x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    per_call = []
    for _ in range(3 + calls):
        request.infer({0: x})
        totals: dict[tuple[str, str], float] = {}
        for layer in request.profiling_info:
            key = (layer.node_type, layer.exec_type)
            totals[key] = totals.get(key, 0.0) + layer.real_time.total_seconds() * 1e3
        per_call.append(totals)
    rows = [
        {"layer": layer, "kernel": kernel, "ms": statistics.median(c.get((layer, kernel), 0.0) for c in per_call[3:])}
        for layer, kernel in per_call[-1]
    ]
    rows = sorted((r for r in rows if r["ms"] >= 0.05), key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in rows)
    for r in rows:
        print(f"  {r['layer']:18s} {r['kernel']:28s} {r['ms']:6.2f} ms  {100 * r['ms'] / total:4.1f} %", flush=True)
    return rows


def network_only(
    checkpoint: Path | None, size: int, calls: int, candidate: tuple[str, Path] | None = None
) -> list[dict]:
    network = _network(checkpoint)
    x = torch.rand(1, 1, size, size)
    variants = {("hybrid_lite0", name): call for name, call in _variants(network, x).items()}
    if candidate is not None:
        preset, weights = candidate
        other = _network(weights, preset)
        variants.update({(preset, name): call for name, call in _variants(other, x).items() if name in CANDIDATE_MODES})
    v2 = create_network("tfkt_v2").eval()
    v2_x = x.cuda() if CUDA else x
    v2 = v2.cuda() if CUDA else v2
    variants["tfkt_v2", "cuda fp32" if CUDA else "torch fp32"] = (lambda: v2(v2_x), 1)
    rows = []
    for (net, mode), rate in interleaved_rates(variants, calls).items():
        rows.append({"network": net, "mode": mode, "slices_per_s": rate})
        print(f"  {net:13s} {mode:28s} {rate:7.2f} slices/s", flush=True)
    return rows


def _plot(e2e: list[dict], net: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [f"{r['series']}: {r['setting']}" for r in e2e]
    axes[0].barh(labels, [r["slices_per_s"] for r in e2e], color="tab:blue")
    axes[0].set_title("tfkt-score end to end (marginal slices/s)")
    labels = [f"{r['network']}: {r['mode']}" for r in net]
    axes[1].barh(labels, [r["slices_per_s"] for r in net], color="tab:orange")
    axes[1].set_title("network alone, 512x512, batch 1")
    for ax in axes:
        ax.axvline(30, color="grey", linestyle="--", linewidth=1)
        ax.invert_yaxis()
        ax.set_xlabel("slices per second")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _candidate(text: str) -> tuple[str, Path]:
    preset, sep, checkpoint = text.partition(":")
    if not sep or not Path(checkpoint).is_file():
        raise argparse.ArgumentTypeError(f"expected PRESET:CHECKPOINT with an existing checkpoint file, got {text!r}")
    return preset, Path(checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help=f"weights (default {DEFAULT_CHECKPOINT} if it exists)")
    parser.add_argument("--series", type=Path, default=stress.SHARED_SERIES)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long", type=int, default=0, help="also score one series of this many slices (memory)")
    parser.add_argument("--calls", type=int, default=40, help="network-only calls per setting")
    parser.add_argument("--torch-batches", type=int, nargs="+", default=[1, 4], help="end to end, eager PyTorch")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--candidate",
        type=_candidate,
        metavar="PRESET:CHECKPOINT",
        help="another network (e.g. hybrid_lite0_fast and its fine-tuned weights), timed beside the default",
    )
    parser.add_argument(
        "--default-only",
        action="store_true",
        help="end to end only the default setting (and --candidate's), and no decoder or layer profile",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--replot", type=Path, help="only draw --plot again from a --json file of an earlier run")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.replot.read_text())
        _plot(saved.get("end_to_end", []), saved["network"], args.plot)
        return
    checkpoint = args.checkpoint or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None)
    device = torch.cuda.get_device_name(0) if CUDA else f"CPU, {torch.get_num_threads()} threads"
    cpu = cpu_name()
    print(f"torch {torch.__version__}, {device}, {cpu}; checkpoint {checkpoint or 'random weights'}")
    results: dict = {"device": device, "cpu": cpu, "checkpoint": str(checkpoint)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if checkpoint is None:
            checkpoint = root / "random.pt"
            torch.save(create_network("hybrid_lite0").state_dict(), checkpoint)
        if not args.skip_e2e:
            worker = ["--backend", "openvino", "--workers", "1"]
            every_core = [*worker, "--threads", str(torch.get_num_threads())]
            settings = {
                DEFAULT_SETTING: ["--backend", "openvino"],
                # As up to 0.8.4: two slices a call on two streams, the network on every core, f32.
                "openvino f32, 1 decoder, 2 streams (0.8.4 default)": [
                    *every_core,
                    "--batch-size",
                    "2",
                    "--precision",
                    "f32",
                ],
                "openvino auto, 1 decoder, network on the other core": worker,
                "openvino auto, 1 decoder, network on every core": every_core,
                "openvino auto, inline, network on every core": ["--backend", "openvino", "--workers", "0"],
                "openvino auto, GDCM first": ["--backend", "openvino"],
                "openvino bf16": ["--backend", "openvino", "--precision", "bf16"],
            }
            for batch in args.torch_batches:
                torch_options = ["--backend", "torch", "--batch-size", str(batch)]
                settings[f"torch fp32, batch {batch}"] = torch_options
            if CUDA:
                settings = {
                    "cuda amp": ["--device", "cuda"],
                    "cuda amp batch 16": ["--device", "cuda", "--batch-size", "16"],
                }
            elif args.default_only:
                settings = {DEFAULT_SETTING: settings[DEFAULT_SETTING]}
            models = {}
            if args.candidate:
                label = f"{args.candidate[0]}, openvino auto (default settings)"
                settings[label], models[label] = ["--backend", "openvino"], args.candidate
            print(f"\nend to end, tfkt-score, {args.slices}-slice series, median of {args.repeats}:")
            series = build_series(args.series, root / "series", args.slices)
            results["end_to_end"] = end_to_end(series, root, checkpoint, settings, args.repeats, models)
            if args.long:
                long_series = root / "series" / "very_long"
                stress.build_long_series(stress.read_series(args.series), long_series, args.long)
                result = stress.score(long_series, root / "out_very_long", checkpoint, None)
                results["long"] = {"slices": args.long, **result}
                print(f"  one {args.long}-slice series: {result['wall_s']:.1f} s, peak {result['peak_gib']:.2f} GiB")
            print("\nreading alone (one decoding worker's work, in this process):")
            results["reader_core_ms"] = reader_only(series)
        if not args.default_only:
            print("\ndecoding alone (the plugins take turns):")
            results["decode"] = decode_only(args.series)
        print("\nnetwork alone, batch 1, 512x512:")
        results["network"] = network_only(checkpoint, 512, args.calls, args.candidate)
        if not CUDA and OPENVINO and not args.default_only:
            print("\nOpenVINO f32, where a 512x512 slice's time goes (layers of 0.05 ms or more):")
            results["openvino_layers"] = openvino_layers(checkpoint, 512, args.calls)
    mode = default_mode(_network(None))
    default = next(r["slices_per_s"] for r in results["network"] if (r["network"], r["mode"]) == ("hybrid_lite0", mode))
    v2 = next(r["slices_per_s"] for r in results["network"] if r["network"] == "tfkt_v2")
    results["default_mode"], results["ratio_default_to_tfkt_v2"] = mode, default / v2
    print(f"\nthe default network as tfkt-score runs it ({mode}) / tfkt_v2 layout: {default / v2:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.plot:
        _plot(results.get("end_to_end", []), results["network"], args.plot)


if __name__ == "__main__":
    main()
