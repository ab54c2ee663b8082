"""MONAI Label app: CT image-quality scores (0 = bad ... 4 = excellent) from the tfkt_bundle, per slice.

Conf options (``monailabel start_server --conf NAME VALUE``):

* ``models``: infer tasks to serve, comma-separated, or ``all`` (default); there is one, ``tfkt_quality``.
* ``bundle``: the bundle folder (default: this repository's ``tfkt_bundle``).
* ``checkpoint``: the network's weights (default: the bundle's ``models/model.pt``).
* ``network_preset``: the network layout the weights are for (default: the bundle's, ``hybrid_lite0``).
* ``batch_size``: slices per forward pass (default 8).
"""

from __future__ import annotations

import logging

from lib.bundle import DEFAULT_BUNDLE, load_bundle
from lib.infers import QualityScore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

logger = logging.getLogger(__name__)

MODELS = ("tfkt_quality",)


class TFKTQualityApp(MONAILabelApp):
    """Serves the bundle's quality scoring as a classification-type infer task; the datastore is MONAI Label's."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="tfkt_quality",
            description="No-reference CT image quality per slice (tfkt_bundle)",
            version="0.3.0",
        )

    def init_infers(self) -> dict[str, InferTask]:
        names = _selected_models(self.conf.get("models", "all"))
        if not names:
            return {}
        # Parsed once: the network is built here and its weights loaded (and reloaded if the file changes) per device.
        bundle = load_bundle(self.conf.get("bundle", DEFAULT_BUNDLE), self.conf.get("network_preset"))
        checkpoint = self.conf.get("checkpoint")
        batch_size = int(self.conf.get("batch_size", 8))
        logger.info("tfkt_quality: bundle %s, checkpoint %s", bundle.root, checkpoint or bundle.checkpoint)
        return {name: QualityScore(bundle, checkpoint, batch_size) for name in names}


def _selected_models(value: str) -> list[str]:
    """The ``models`` conf option as names; unknown names stop the app with the valid ones."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    if names == ["all"]:
        return list(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)} in --conf models; valid: all, {', '.join(MODELS)}")
    return names
