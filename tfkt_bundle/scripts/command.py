"""``tfkt-bundle``: the bundle's workflows from any directory, with the bundle's own checks around MONAI's runner.

``tfkt-bundle run training --dataset_dir /data/LDCTIQAG2023_train`` is ``python -m monai.bundle run training
--config_file configs/train.json --dataset_dir ...`` run from the bundle root, plus what that runner cannot do:

- any working directory: the workflow's config files and ``bundle_root`` come from the installed bundle;
- ``None``/``null`` values are passed on as None (the MONAI runner drops them);
- a setting that names no config id (the nearest ids are suggested) or gives a value of the wrong type is refused in
  one line (:mod:`scripts.utils.cli`); so is a near-miss of an existing id in a later config file;
- every expected error, the runner's own included, is one line (``TFKT_DEBUG=1`` for the traceback).

Workflows: ``training``, ``pretraining``, ``evaluating``, ``inference``, ``rescoring`` (see :data:`WORKFLOWS`);
``--config_file`` replaces the workflow's files (paths relative to the working directory or to ``configs/``).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts.utils.cli import NONE_WORDS, check_overrides, report_error, split_flags

__all__ = [
    "WORKFLOWS",
    "BUNDLE_ROOT",
    "INFERENCE_BACKEND_CONFIGS",
    "UNCERTAINTY_CONFIG",
    "inference_configs",
    "model_overrides",
    "parse_command",
    "main",
]

BUNDLE_ROOT = Path(__file__).resolve().parent.parent
# workflow -> (config files, merged in order, and the run id they define)
WORKFLOWS = {
    "training": (("train.json",), "training"),
    "pretraining": (("train.json", "pretrain.json"), "pretraining"),
    "evaluating": (("train.json", "evaluate.json"), "evaluating"),
    "inference": (("inference.json",), "run"),
    "rescoring": (("rescore.json",), "rescoring"),
}
USAGE = f"usage: tfkt-bundle run {{{','.join(WORKFLOWS)}}} [--id value ...]"
# Inference backends other than eager torch: the config merged over inference.json that swaps the network.
INFERENCE_BACKEND_CONFIGS = {"onnx": "inference_onnx.json", "openvino": "inference_openvino.json"}
# Merged after the backend's: scores each slice's 8 flips and rotations around whatever network the backend runs.
UNCERTAINTY_CONFIG = "inference_uncertainty.json"


def inference_configs(backend: str, bundle_root: str | Path = BUNDLE_ROOT, uncertainty: bool = False) -> list[Path]:
    """The config files, merged in order, of the inference workflow run by ``backend`` ("torch", "onnx", ...), with
    the score's spread over each slice's flips and rotations when ``uncertainty``."""
    configs = Path(bundle_root) / "configs"
    extra = [] if backend == "torch" else [configs / INFERENCE_BACKEND_CONFIGS[backend]]
    return [configs / "inference.json", *extra, *([configs / UNCERTAINTY_CONFIG] if uncertainty else [])]


def model_overrides(backend: str, checkpoint: str | Path, network_preset: str | None, precision: str) -> dict:
    """The inference ids that choose the model: its weights (the ONNX file for onnx), layout, OpenVINO precision."""
    overrides: dict = {("onnx_path" if backend == "onnx" else "ckpt_path"): str(checkpoint)}
    if network_preset:
        overrides["network_preset"] = network_preset
    if backend == "openvino":
        overrides["openvino_precision"] = precision
    return overrides


def parse_command(argv: Sequence[str]) -> tuple[str, list[str], dict]:
    """``run WORKFLOW --id value ...`` -> (run id, config files, overrides with values read as Python literals)."""
    if len(argv) < 2 or argv[0] != "run" or argv[1] not in WORKFLOWS:
        raise ValueError(f"{USAGE}; got {' '.join(argv) or 'nothing'}")
    files, run_id = WORKFLOWS[argv[1]]
    overrides = dict(_pairs(argv[2:]))
    given = overrides.pop("config_file", None)
    paths = [_config_path(f) for f in (_as_list(given) if given is not None else files)]
    overrides.setdefault("bundle_root", str(BUNDLE_ROOT))
    return run_id, paths, overrides


def _pairs(tokens: Sequence[str]):
    for key, text in split_flags(tokens, hint=f" ({USAGE})"):
        yield key.replace("::", "#"), _value(text)


def _value(text: str | bool):
    if text is True:
        return True  # a bare flag
    if text in NONE_WORDS:
        return "$None"  # an expression: the MONAI runner would drop a plain None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _as_list(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _config_path(name: str) -> str:
    path = Path(name)
    for candidate in (path, BUNDLE_ROOT / "configs" / path.name):
        if candidate.is_file():
            return str(candidate.resolve())
    raise FileNotFoundError(f"config file {name} not found here or in {BUNDLE_ROOT / 'configs'}")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``tfkt-bundle``."""
    sys.excepthook = report_error
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[0] + "\n\n" + USAGE)
        return
    run_id, files, overrides = parse_command(argv)
    check_overrides(files, overrides)
    from monai.bundle import run  # imported here: --help and usage errors stay instant

    configs = BUNDLE_ROOT / "configs"
    run(
        run_id,
        config_file=files,
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        **overrides,
    )


if __name__ == "__main__":
    main()
