"""Checkpoints that survive a killed run: atomic files, resumable state, a best score that outlives a resume."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from .atomic import atomic_path

logger = logging.getLogger(__name__)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose files are written to a temporary name and renamed into place.

    MONAI turns ignite's atomic writes off only to keep group/other read permission, which ignite now restores
    itself. With a fixed file name (``key_metric_filename="model.pt"``) MONAI also deletes the old file *before*
    writing the new one; here the rename replaces it instead, so a run killed at any moment leaves a complete
    ``model.pt``: the previous best or the new one.

    ``state_dict``/``load_state_dict`` carry the key-metric history (best score and its file), so that putting this
    saver into the resumable checkpoint lets a resumed run keep ``model.pt`` unless it really beats it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                handler = checkpoint.save_handler
                handler._atomic = True
                if getattr(handler, "filename", None) is not None:
                    handler.remove = _keep_fixed_file

    def state_dict(self) -> dict:
        """Key-metric history: ``{"_saved": [(score, filename), ...]}`` (empty without a key metric)."""
        return dict(self._key_metric_checkpoint.state_dict()) if self._key_metric_checkpoint is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict:
            super().load_state_dict(state_dict)


def _keep_fixed_file(filename: str) -> None:
    """The atomic rename of the next save replaces a fixed-name file; deleting it first would open a gap."""


class LastCheckpoint:
    """Save everything a resumed run needs to one fixed file after every epoch, atomically.

    Args:
        path: checkpoint file (e.g. ``<output_dir>/finetune/last.pt``).
        save_dict: objects with ``state_dict()``: network, optimizer, scheduler, trainer, best-model saver, ...
    """

    def __init__(self, path: str, save_dict: Mapping[str, Any]) -> None:
        self.path = path
        self.save_dict = dict(save_dict)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        state = {name: _unwrap(obj).state_dict() for name, obj in self.save_dict.items()}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        logger.info("saved resumable checkpoint of epoch %d to %s", engine.state.epoch, self.path)


def _unwrap(obj: Any) -> Any:
    """The module inside (Distributed)DataParallel, so that checkpoints load with or without it."""
    return obj.module if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else obj


def resume_requested(resume: bool, path: str) -> bool:
    """Whether to load ``path`` before training; says why in the log either way."""
    if not resume:
        return False
    if not os.path.isfile(path):
        logger.warning("resume requested but %s does not exist: starting from epoch 1", path)
        return False
    # The loader reads the file next and ignite logs the epoch it resumes from; reading it here too would double I/O.
    logger.info("resuming from %s", path)
    return True


__all__ = ["AtomicCheckpointSaver", "LastCheckpoint", "resume_requested"]
