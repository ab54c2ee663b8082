"""``tfkt-score``: score clinical CT with the bundle's model, one command, no config to write.

    tfkt-score INPUT... --out OUTDIR [--checkpoint PATH] [--threshold 2.0] [--batch-size N] [--device cpu|cuda]
               [--workers N] [--threads N]
               [--uncertainty] [--no-quality-maps]
    tfkt-score compare BEFORE AFTER --out OUTDIR [same options]
    tfkt-score INPUT... --out OUTDIR --engine ray [--address auto|HOST:PORT]   (an archive, on Ray: extra 'scale')

INPUT: DICOM folders (searched recursively: any number of studies and series, other files skipped with a reason),
DICOM files, NIfTI volumes, 2-D image files or folders of them. It runs the bundle's own inference workflow
(``configs/inference.json``), so the scores are those of ``tfkt-bundle run inference``, and writes per series
``OUTDIR/<series>/scores.csv``, ``summary.json`` and ``scores.png``, then ``OUTDIR/index.csv`` and a
self-contained ``OUTDIR/report.html`` (with a map of per-region quality beside each thumbnail of a worst slice).

``compare`` scores two versions of the same exam (e.g. filtered back-projection and iterative reconstruction, or
raw and denoised) into ``OUTDIR/before`` and ``OUTDIR/after``, pairs their slices by position (by order when
positions are missing) and writes ``comparison.csv``, ``comparison.json`` and ``comparison.png``: the mean gain
with its bootstrap 95 % confidence interval and the share of slices improved.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts.command import BUNDLE_ROOT, inference_configs, model_overrides
from scripts.utils.cli import one_line, report_error, root_cause
from scripts.utils.paths import writable_dir

__all__ = ["DEFAULT_CHECKPOINT", "DEFAULT_ONNX", "EXIT_CODES", "build_parser", "score", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SKIPPED, EXIT_NOTHING, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = {
    EXIT_OK: "every input scored",
    EXIT_FAILED: "the run failed (one-line error; TFKT_DEBUG=1 for the traceback)",
    EXIT_USAGE: "bad usage or set-up: an unknown option, a missing input or checkpoint, an output folder that cannot "
    "be written (read-only, full disk), no CUDA for --device cuda, a missing package (e.g. a DICOM decoder)",
    EXIT_SKIPPED: "scored, but some inputs, files or slices were skipped (reasons in OUTDIR/skipped.csv)",
    EXIT_NOTHING: "nothing could be scored (reasons in OUTDIR/skipped.csv)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): the series finished so far are kept; rerun with --resume",
}

CONFIGS = BUNDLE_ROOT / "configs"
DEFAULT_CHECKPOINT = BUNDLE_ROOT / "models" / "model.pt"
DEFAULT_ONNX = BUNDLE_ROOT / "models" / "model.onnx"
BACKENDS = ("auto", "torch", "openvino", "onnx")
_TRAIN_ONE = "make one with `make demo` or the training workflow (README: Workflows), or pass --checkpoint"
_MAKE_IT = {"torch": _TRAIN_ONE, "openvino": _TRAIN_ONE, "onnx": "export one (README: Export), or pass --checkpoint"}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown beside each option, and the exit-code list kept as written."""


def build_parser(compare: bool = False) -> argparse.ArgumentParser:
    """The ``tfkt-score`` (or ``tfkt-score compare``) argument parser."""
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="tfkt-score compare" if compare else "tfkt-score",
        description=doc[3 if compare else 2].replace("\n", " "),
        formatter_class=_HelpFormatter,
        epilog="exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items()),
    )
    if compare:
        parser.add_argument("before", help="the exam as it was (a DICOM series folder, a volume or image folder)")
        parser.add_argument("after", help="the same exam reconstructed or denoised otherwise")
    else:
        parser.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM folders/files, NIfTI, image files")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--checkpoint", type=Path, help=f"model weights (default {DEFAULT_CHECKPOINT}; .onnx file)")
    parser.add_argument("--threshold", type=float, default=2.0, help="flag slices scored below this (0-4 scale)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="slices per network call (OpenVINO runs them side by side on streams, up to one per thread)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="processes decoding slices beside the network (0: decode inline; default: 1 for compressed DICOM such as "
        "JPEG 2000, 0 for uncompressed DICOM, 1 for other inputs)",
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads of the network (default: every core the decoding workers leave)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: the GPU if any")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: OpenVINO on a CPU when installed, else torch; onnx: an exported model in ONNX Runtime",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "f32", "mixed", "bf16"),
        default="auto",
        help="OpenVINO: auto is mixed (the network's front in f32, the rest in bf16; scores within 0.05 of f32) where "
        "the CPU has AVX-512 BF16 or AMX, else f32; bf16 throughout moves scores by up to 0.4",
    )
    parser.add_argument("--resume", action="store_true", help="keep the series an interrupted run into --out finished")
    parser.add_argument("--verbose", action="store_true", help="log the workflow's progress (INFO)")
    parser.add_argument("--network-preset", help="network layout of the checkpoint (default: the config's)")
    parser.add_argument(
        "--uncertainty",
        action="store_true",
        help="score each slice's 8 flips and 90-degree rotations: the score is then their mean, and their SD is "
        "written beside it (score_sd in scores.csv, the series' mean in summary.json and index.csv); 8x the time",
    )
    parser.add_argument(
        "--no-quality-maps",
        dest="quality_maps",
        action="store_false",
        help="leave out the report's per-region quality maps (eager torch re-runs only on the shown slices)",
    )
    if not compare:  # archive scale: the optional extra 'scale' (pip install -r requirements-scale.txt)
        parser.add_argument("--engine", choices=("local", "ray"), default="local", help="ray: on Ray workers")
        parser.add_argument("--address", help="--engine ray: the Ray cluster (auto, HOST:PORT); none: a local one")
    if compare:
        parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the confidence interval")
    return parser


def _checked(args: argparse.Namespace, inputs: Sequence[str]) -> argparse.Namespace:
    for path in inputs:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
    _check_engine(args)
    args.backend = resolved_backend(args.backend, args.device)
    args.checkpoint = args.checkpoint or (DEFAULT_ONNX if args.backend == "onnx" else DEFAULT_CHECKPOINT)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist: {_MAKE_IT[args.backend]}")
    for name, least in (("batch_size", 1), ("workers", 0), ("threads", 1)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {least}")
    if args.device == "cuda" and not getattr(args, "address", None):  # a Ray cluster's GPUs: the engine checks
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible to torch")
    writable_dir(args.out)
    return args


def _check_engine(args: argparse.Namespace) -> None:
    """``--engine ray`` needs Ray (the extra 'scale'), and ``--address`` names the cluster of that engine."""
    engine = getattr(args, "engine", "local")
    if getattr(args, "address", None) and engine != "ray":
        raise ValueError("--address names a Ray cluster: add --engine ray")
    if engine == "ray" and args.uncertainty:  # the Ray workers run the plain inference configs
        raise ValueError("--uncertainty runs with --engine local only")
    if engine == "ray":
        from scripts.scale import check_ray  # cheap: Ray itself is imported only to see that it is there

        check_ray()


def resolved_backend(backend: str, device: str) -> str:
    """``auto``: OpenVINO for CPU scoring when it is installed (about 2.5x eager PyTorch on a CPU), else torch."""
    if backend != "auto":
        return backend
    if device == "cuda":
        return "torch"
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return "torch"
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return "torch"
    return "openvino"


def decoding_workers(inputs: Sequence[Path]) -> int:
    """``--workers`` by default: one process decoding beside the network, except for uncompressed DICOM (sampled,
    ``compressed_dicom``), whose slices cost less to read than to hand over between processes, so that the network
    gets every core (``network_threads``; on 2 cores 1.45x the rate, ``benchmarks/speed.py``)."""
    from scripts.ctio.dicom_pixels import compressed_dicom

    return 0 if compressed_dicom(inputs) is False else 1


def _overrides(inputs: Sequence[Path], out: Path, args: argparse.Namespace) -> dict:
    overrides = {
        "bundle_root": str(BUNDLE_ROOT),
        "dataset_dir": [str(p.resolve()) for p in inputs],
        "output_dir": str(out.resolve()),
        "low_quality_threshold": args.threshold,
        "batch_size": args.batch_size,
        "num_workers": decoding_workers(inputs) if args.workers is None else args.workers,
        "resume": args.resume,
        "quality_maps": args.quality_maps,
        **model_overrides(args.backend, args.checkpoint.resolve(), args.network_preset, args.precision),
    }
    if args.threads:
        overrides["network_threads"] = args.threads
    if args.device != "auto":
        overrides["device"] = f"$torch.device('{'cuda:0' if args.device == 'cuda' else 'cpu'}')"
    return overrides


def score(inputs: Sequence[Path], out: Path, args: argparse.Namespace) -> tuple[list[dict], list[tuple[str, str]]]:
    """Run the inference workflow on ``inputs`` into ``out``; return its per-slice rows and the skipped items."""
    if getattr(args, "engine", "local") == "ray":
        from scripts.scale.ray_engine import score_on_ray  # imported here: Ray and its workers only when asked

        return score_on_ray(inputs, out, args)
    from monai.bundle import ConfigWorkflow  # imported here: --help and usage errors stay instant

    workflow = ConfigWorkflow(
        config_file=[str(f) for f in inference_configs(args.backend, uncertainty=args.uncertainty)],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type="inference",
        **_overrides(inputs, out, args),
    )
    if not args.verbose:  # the bundle's logging, less the per-run engine chatter: warnings and skips stay
        logging.getLogger().setLevel(logging.WARNING)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    report = workflow.parser.get_parsed_content("exam_report")
    return report.report.rows, report.skipped


def _compare(args: argparse.Namespace) -> list[tuple[str, str]]:
    from scripts.clinical.compare import compare_scores, format_comparison, pair_slices, write_comparison

    before, skipped_before = score([Path(args.before)], args.out / "before", args)
    after, skipped_after = score([Path(args.after)], args.out / "after", args)
    pairing = pair_slices(before, after)
    result = compare_scores(pairing, n_boot=args.n_boot)
    written = write_comparison(args.out, pairing, result)
    print(format_comparison(result))
    print(f"wrote {args.out}: {', '.join(p.name for p in written.values())}")
    return skipped_before + skipped_after


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``tfkt-score``; returns the exit code (:data:`EXIT_CODES`)."""
    sys.excepthook = report_error
    argv = list(sys.argv[1:] if argv is None else argv)
    compare = bool(argv) and argv[0] == "compare"
    args = build_parser(compare).parse_args(argv[1:] if compare else argv)
    inputs = [args.before, args.after] if compare else args.inputs
    try:
        args = _checked(args, inputs)
    except (OSError, ValueError, ImportError) as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        skipped = _compare(args) if compare else score([Path(p) for p in inputs], args.out, args)[1]
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished series are kept in {args.out}; add --resume to score the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # MONAI wraps what the workflow raises: look at the cause
        from scripts.clinical.exam_report import NothingScoredError  # loaded by the workflow already

        root = root_cause(err)
        if isinstance(root, ImportError):  # a missing package (a DICOM decoder, a backend): a set-up problem
            print(f"error: {type(root).__name__}: {one_line(root)}", file=sys.stderr)
            return EXIT_USAGE
        if not isinstance(root, NothingScoredError):
            raise
        print(f"error: {root}", file=sys.stderr)
        return EXIT_NOTHING
    return EXIT_SKIPPED if skipped else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
