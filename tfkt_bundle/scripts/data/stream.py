"""The slices of any CT input as MONAI data dicts, streamed: the dataset of the inference workflow.

Each item is ``{"image": (H, W) float32, "is_hu": bool, "name", <SLICE_KEYS>}``, as read (HU for DICOM and
NIfTI, [0, 1] for image files); the workflow's ``preprocessing`` windows and shapes it, so the config shows it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import torch
from monai.data import list_data_collate

from scripts.ctio.slices import Inputs, iter_ct_slices, slice_identity
from scripts.utils.skips import SkipLog

__all__ = ["SliceStream", "collate_slices", "cores", "network_threads", "same_size_batches"]


@functools.cache
def cores() -> int:
    """The CPU threads this process computes with by default (torch's, which honours ``OMP_NUM_THREADS``), read once:
    the inference workflow sets torch's threads, and that must not shrink the next run in the same process."""
    return torch.get_num_threads()


def network_threads(num_workers: int) -> int:
    """CPU threads for a network as fast as decoding beside ``num_workers`` decoding workers: every core they leave.

    With OpenVINO's mixed precision a slice costs about as much core time to score as a JPEG 2000 slice to decode,
    so the decoding worker is the pipeline's slow stage, and a network thread sharing its core slows the whole run
    (2 AMX Xeon cores: 1.10-1.14x the rate of the network on both, benchmarks/speed.py). ``num_workers=0``: every
    core. A network much slower than decoding (eager PyTorch on a CPU) is better off on every core (``cores``).
    """
    return max(1, cores() - num_workers)


class SliceStream(torch.utils.data.IterableDataset):
    """Re-iterable stream of slice items; each pass re-reads the inputs, and only one slice is in memory at a time.

    With DataLoader workers, each worker decodes a disjoint share of the slices (``iter_ct_slices(shard=)``), so
    decoding runs beside the network and every slice is yielded once; items then arrive interleaved by worker.

    Args:
        inputs: one path or several: DICOM folders or files, NIfTI volumes, 2-D image files or folders of them.
        transform: applied to each item (e.g. the workflow's ``preprocessing``); None yields items as read.
        skip_log: if given, every skipped input, file or slice is added to it with its reason (from any worker).
        batch_size: if given, yield lists of up to this many items of one image size (a new size starts a new
            list), for a DataLoader with ``batch_size=None`` and :func:`collate_slices`: series of different matrix
            sizes then batch without padding, which would change their scores.
        exclude_series: series keys not to read (a resumed run's finished series).
    """

    def __init__(
        self,
        inputs: Inputs,
        transform: Callable[[dict], dict] | None = None,
        skip_log: SkipLog | None = None,
        batch_size: int | None = None,
        exclude_series: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.inputs = inputs
        self.transform = transform
        self.skip_log = skip_log
        self.batch_size = batch_size
        self.exclude_series = tuple(exclude_series)

    def __iter__(self) -> Iterator[dict] | Iterator[list[dict]]:
        items = self._items()
        return items if self.batch_size is None else same_size_batches(items, self.batch_size)

    def _items(self) -> Iterator[dict]:
        # Skipped files and slices are logged with their reasons by scripts.ctio, and listed in the skip log.
        worker = torch.utils.data.get_worker_info()
        shard = (0, 1) if worker is None else (worker.id, worker.num_workers)
        skipped: list = [] if self.skip_log is not None else None
        for index, (array, info) in enumerate(
            iter_ct_slices(self.inputs, skipped=skipped, shard=shard, exclude_series=self.exclude_series)
        ):
            self._flush(skipped)
            item = {"image": array, "is_hu": bool(info["is_hu"]), **slice_identity(info, index)}
            yield self.transform(item) if self.transform is not None else item
        self._flush(skipped)

    def _flush(self, skipped: list | None) -> None:
        if skipped:
            self.skip_log.add(skipped)
            skipped.clear()


def same_size_batches(items: Iterator[dict], size: int) -> Iterator[list[dict]]:
    """Consecutive items of one image size, up to ``size``: padding mixed sizes would change their scores."""
    batch: list[dict] = []
    for item in items:
        if batch and (len(batch) == size or tuple(item["image"].shape) != tuple(batch[0]["image"].shape)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def collate_slices(items: list[dict]) -> dict:
    """One batch of slice items: ``image`` collated by MONAI, every other key a list with one value per slice.

    The identifiers stay Python values because each tensor a DataLoader worker returns crosses to the main process
    through a file descriptor of its own: a dozen per-slice numbers as tensors cost the main process more than the
    image itself (about 5 ms a slice, measured with one decoding worker). Decollating gives each item its values back.
    """
    batch = list_data_collate([{"image": item["image"]} for item in items])
    batch.update({key: [item[key] for item in items] for key in items[0] if key != "image"})
    return batch
