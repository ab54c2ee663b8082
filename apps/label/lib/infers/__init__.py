"""Infer tasks of the app."""

from .quality import QUALITY_LABEL, QualityScore

__all__ = ["QUALITY_LABEL", "QualityScore"]
