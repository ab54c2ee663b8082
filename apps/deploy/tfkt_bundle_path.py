"""Where tfkt_bundle is, and its package ``scripts`` importable: imported before anything from the bundle.

The repo layout has the bundle at ../../tfkt_bundle (and ``scripts`` installed editable by ``make venv-deploy``); a
MAP built with ``--add tfkt_bundle`` has it next to app.py. TFKT_BUNDLE_ROOT overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["BUNDLE_ROOT"]


def _bundle_root() -> Path:
    if os.environ.get("TFKT_BUNDLE_ROOT"):
        return Path(os.environ["TFKT_BUNDLE_ROOT"])
    here = Path(__file__).resolve().parent
    candidates = (here / "tfkt_bundle", here.parents[1] / "tfkt_bundle")
    return next((c for c in candidates if (c / "configs" / "inference.json").is_file()), candidates[-1])


BUNDLE_ROOT = _bundle_root()
if str(BUNDLE_ROOT) not in sys.path:  # as the MONAI bundle runner does; a no-op beside the editable install
    sys.path.append(str(BUNDLE_ROOT))
