"""ignite's tqdm progress bar, configurable from a bundle config like every MONAI handler."""

from __future__ import annotations

from collections.abc import Callable

from ignite.engine import Engine
from ignite.handlers import ProgressBar as _IgniteProgressBar

__all__ = ["ProgressBar"]


class ProgressBar(_IgniteProgressBar):
    """ignite's tqdm progress bar, configurable from a bundle config (MONAI engines call ``attach(engine)``).

    Args:
        desc: label in front of the bar.
        output_transform: maps ``engine.state.output`` to values shown beside the bar (e.g. the loss).
        persist: keep the finished bar on screen.
        disable: None hides the bar when the output is not a terminal (logs stay readable), True always.
    """

    def __init__(
        self,
        desc: str | None = None,
        output_transform: Callable | None = None,
        persist: bool = False,
        disable: bool | None = None,
    ) -> None:
        super().__init__(persist=persist, desc=desc, disable=disable)
        self._output_transform = output_transform

    def attach(self, engine: Engine, *args, **kwargs) -> None:  # type: ignore[override]
        kwargs.setdefault("output_transform", self._output_transform)
        super().attach(engine, *args, **kwargs)
