"""The slices of any CT input as MONAI data dicts, streamed: the dataset of the inference workflow.

Each item is ``{"image": (H, W) float32, "is_hu": bool, "name", <SLICE_KEYS>}``, as read (HU for DICOM and
NIfTI, [0, 1] for image files); the workflow's ``preprocessing`` windows and shapes it, so the config shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from scripts.ctio.slices import Inputs, iter_ct_slices, slice_identity

__all__ = ["SliceStream"]


class SliceStream(torch.utils.data.IterableDataset):
    """Re-iterable stream of slice items; each pass re-reads the inputs, and only one slice is in memory at a time.

    With DataLoader workers, each worker decodes a disjoint share of the slices (``iter_ct_slices(shard=)``), so
    decoding runs beside the network and every slice is yielded once; items then arrive interleaved by worker.

    Args:
        inputs: one path or several: DICOM folders or files, NIfTI volumes, 2-D image files or folders of them.
        transform: applied to each item (e.g. the workflow's ``preprocessing``); None yields items as read.
    """

    def __init__(self, inputs: Inputs, transform: Callable[[dict], dict] | None = None) -> None:
        super().__init__()
        self.inputs = inputs
        self.transform = transform

    def __iter__(self) -> Iterator[dict]:
        # Skipped files and slices are logged with their reasons by scripts.ctio.
        worker = torch.utils.data.get_worker_info()
        shard = (0, 1) if worker is None else (worker.id, worker.num_workers)
        for index, (array, info) in enumerate(iter_ct_slices(self.inputs, shard=shard)):
            item = {"image": array, "is_hu": bool(info["is_hu"]), **slice_identity(info, index)}
            yield self.transform(item) if self.transform is not None else item
