"""Random draws as a function of (seed, epoch), so that a run resumed after an interruption draws what the
uninterrupted run would have drawn: the same shuffles, augmentations and dropout masks, the same final weights."""

from __future__ import annotations

from ignite.engine import Engine, Events
from monai.transforms import Randomizable
from monai.utils import set_determinism

__all__ = ["EpochSeed"]


class EpochSeed:
    """At every epoch start, seed Python, numpy and torch and the augmentation pipeline from ``seed + epoch``.

    The shuffle comes from the train sampler (``DistributedSampler``, whose ``set_epoch`` MONAI calls) and the
    DataLoader has its own generator, so creating the data iterator (before the first epoch of a resumed run,
    after the previous epoch otherwise) draws nothing from the global generators that this re-seeds.

    Args:
        seed: the run's seed.
        transform: the training augmentations (a MONAI ``Compose`` or any ``Randomizable``); None leaves them.
    """

    def __init__(self, seed: int, transform: Randomizable | None = None) -> None:
        self.seed = int(seed)
        self.transform = transform

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        seed = self.seed + engine.state.epoch
        set_determinism(seed=seed)
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=seed)
