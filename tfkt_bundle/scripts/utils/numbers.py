"""Numbers read from headers, tables and batches, where a value may be absent, text or NaN."""

from __future__ import annotations

import math

__all__ = ["finite_float"]


def finite_float(value) -> float | None:
    """``value`` as a finite float, or None when it is absent, not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
