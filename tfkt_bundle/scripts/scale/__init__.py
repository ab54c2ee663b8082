"""Archive scale: ``tfkt-score --engine ray`` scores series on a Ray cluster (the optional extra ``scale``).

Importing the package costs nothing: :func:`check_ray` tells a missing extra apart before anything heavy loads.
"""

from __future__ import annotations

__all__ = ["MISSING_RAY", "check_ray"]

MISSING_RAY = "--engine ray needs Ray: pip install -r requirements-scale.txt (or pip install '.[scale]')"


def check_ray() -> None:
    """Raise ModuleNotFoundError naming the install command when Ray is missing, before anything is scored."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(MISSING_RAY) from None
