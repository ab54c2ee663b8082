"""Checkpoints that survive a killed run: one fixed file each, written atomically, with state that outlives a resume.

Built on ignite's public ``Checkpoint`` (which picks what to save and when, unwraps DistributedDataParallel and keeps
the saved-score history in its ``state_dict``) with a save function of our own: ignite's and MONAI's disk savers
delete a fixed-name file before writing its successor, so a run killed in between would have no ``model.pt`` at all.
Here the new file replaces the old in one rename, so a killed run always leaves a complete file: the old or the new.
Files are written on rank 0 only; every rank keeps the same state, so any rank's checkpoint resumes any rank.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from scripts.utils.atomic import atomic_path

__all__ = ["FileCheckpoint", "resume_requested"]

logger = logging.getLogger(__name__)


class FileCheckpoint:
    """Save ``save_dict`` to ``path`` at the end of each epoch (or only when ``score_metric`` improves), atomically.

    A single object is saved as its plain state dict (``models/model.pt`` loads into the bare network); several are
    saved as ``{name: state_dict}`` (the resumable ``last.pt``). The object itself has ``state_dict`` and
    ``load_state_dict`` (the best score so far), so it can be saved into a resumable checkpoint and restored.

    Args:
        path: the checkpoint file.
        save_dict: objects with ``state_dict()``: network, optimizer, scheduler, trainer, another FileCheckpoint, ...
        score_metric: name in ``engine.state.metrics`` whose increase triggers a save (higher is better);
            None saves every epoch.
    """

    def __init__(self, path: str | os.PathLike, save_dict: Mapping[str, Any], score_metric: str | None = None) -> None:
        self.path = Path(path)
        self.score_metric = score_metric
        score_function = None if score_metric is None else (lambda engine: engine.state.metrics[score_metric])
        self.checkpoint = Checkpoint(
            dict(save_dict),
            save_handler=self._save,
            filename_pattern=self.path.name,
            score_function=score_function,
            score_name=score_metric,
            n_saved=1,
        )

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.checkpoint)

    def state_dict(self) -> dict:
        """ignite's record of what was saved with which score: ``{"_saved": [(priority, filename)]}``."""
        return self.checkpoint.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.checkpoint.load_state_dict(state_dict)

    def _save(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        # A plain callable save handler: ignite calls remove() only on its BaseSaveHandler savers.
        if idist.get_rank() != 0:
            return
        replaced = self.path.is_file()
        with atomic_path(self.path) as tmp:
            torch.save(checkpoint, tmp)
        if self.score_metric is None:
            logger.info("saved the resumable state to %s", self.path)
        else:
            score = (metadata or {}).get("priority")
            shown = f" {score:.4f}" if isinstance(score, float) else ""
            logger.info(
                "new best %s%s: %s %s", self.score_metric, shown, "replaced" if replaced else "wrote", self.path
            )


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
