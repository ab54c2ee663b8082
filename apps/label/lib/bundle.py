"""The parts of the bundle's inference workflow (``configs/inference.json``) that the app runs.

The app reads the bundle's own config, as MONAI Label's ``BundleInferTask`` does, so that reading, windowing and the
network stay the bundle's: a change there reaches the app without a second copy here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from monai.bundle import ConfigParser
from torch import nn

from scripts.data.stream import SliceStream

__all__ = ["DEFAULT_BUNDLE", "INFERENCE_CONFIG", "Bundle", "load_bundle"]

# apps/label/lib/bundle.py -> the repository's tfkt_bundle
DEFAULT_BUNDLE = Path(__file__).resolve().parents[3] / "tfkt_bundle"
INFERENCE_CONFIG = "configs/inference.json"


@dataclass(frozen=True)
class Bundle:
    """The inference workflow of one bundle folder, parsed once.

    Attributes:
        root: the bundle folder.
        network: the workflow's ``network_def`` (no weights loaded: the infer task loads the checkpoint).
        preprocessing: the workflow's ``preprocessing`` (HU window, channel, tensor) of each streamed slice.
        inferer: the workflow's ``inferer``.
        hu_window: the workflow's ``hu_window``.
        checkpoint: the workflow's ``ckpt_path`` (``models/model.pt`` of the bundle).
    """

    root: Path
    network: nn.Module
    preprocessing: Callable[[dict], dict]
    inferer: Callable
    hu_window: tuple[float, float]
    checkpoint: Path

    def slices(self, inputs: str | os.PathLike) -> Iterable[dict]:
        """The workflow's slice stream over ``inputs``: preprocessed slice items, one in memory at a time."""
        # The stream itself, not the workflow's ``dataset`` component: that one also carries the workflow's run
        # outputs (skip log in output_dir) and batching for its DataLoader, which a request has no use for.
        return SliceStream(str(inputs), transform=self.preprocessing)


def load_bundle(root: str | os.PathLike = DEFAULT_BUNDLE, network_preset: str | None = None) -> Bundle:
    """Parse ``<root>/configs/inference.json``, with ``network_preset`` overriding the workflow's if given."""
    root = Path(root).resolve()
    config_file = root / INFERENCE_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} does not exist: --conf bundle must name a tfkt_bundle folder")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser["bundle_root"] = str(root)
    if network_preset:
        parser["network_preset"] = network_preset
    return Bundle(
        root=root,
        network=parser.get_parsed_content("network_def", instantiate=True),
        preprocessing=parser.get_parsed_content("preprocessing", instantiate=True),
        inferer=parser.get_parsed_content("inferer", instantiate=True),
        hu_window=tuple(float(v) for v in parser.get_parsed_content("hu_window")),
        checkpoint=Path(parser.get_parsed_content("ckpt_path")),
    )
