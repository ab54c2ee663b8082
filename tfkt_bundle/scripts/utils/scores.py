"""The quality-score scale and the shape contract of score vectors, shared by readers, networks, losses, metrics."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SCORE_RANGE", "SCORE_NAMES", "check_one_score_per_item"]

# LDCTIQAC 2023 Likert scale: 0 = bad (no diagnostic value) ... 4 = excellent; higher is better.
SCORE_RANGE = (0.0, 4.0)
SCORE_NAMES = ("bad", "poor", "fair", "good", "excellent")


def check_one_score_per_item(shape: Sequence[int], name: str) -> None:
    """Raise ValueError unless ``shape`` is (N,) or (N, 1): one score per item, batch first.

    Works on numpy and torch shapes alike. Anything with more per item is an error, never silently flattened: a
    (B, 1) prediction against a (B,) label would otherwise broadcast to (B, B).
    """
    shape = tuple(int(n) for n in shape)
    if not shape:
        raise ValueError(f"{name} must be a batch-first sequence of scores, got a scalar")
    count = 1
    for n in shape:
        count *= n
    if count != shape[0]:
        raise ValueError(f"{name} must hold one score per item, shape (N,) or (N, 1), got shape {shape}")
