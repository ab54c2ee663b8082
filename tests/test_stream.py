"""scripts.data.stream: SliceStream over image files and a NIfTI volume, its batches, and HUWindowd on its items."""

import math

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from monai.data import decollate_batch

from scripts.ctio.slices import SLICE_KEYS
from scripts.ctio.window import apply_hu_window
from scripts.data.stream import SliceStream, collate_slices, network_threads
from scripts.data.stream import cores as stream_cores
from scripts.data.transforms import HUWindowd

ITEM_KEYS = {"image", "is_hu", "name", *SLICE_KEYS}
WINDOW = (-1000.0, 400.0)


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "tiffs"
    folder.mkdir()
    tiffs = {}
    for name in ("t10.tif", "t2.tif"):
        tiffs[name] = rng.uniform(0, 1, (4, 6)).astype(np.float32)
        tifffile.imwrite(folder / name, tiffs[name])
    # HU well beyond both ends of the window, so that clipping shows.
    volume = rng.uniform(-1500, 1000, (6, 5, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "vol.nii.gz")
    return {"paths": [folder, tmp_path / "vol.nii.gz"], "tiffs": tiffs, "volume": volume}


def _expected_hu_slice(volume, k):
    # Identity affine is RAS already; the display layout is rows anterior->posterior, columns right->left.
    return volume[::-1, ::-1, k].T


def _same_items(a, b) -> bool:
    def same(x, y):
        if isinstance(x, (np.ndarray, torch.Tensor)):
            return np.array_equal(np.asarray(x), np.asarray(y))
        return (isinstance(x, float) and math.isnan(x) and math.isnan(y)) or x == y

    return len(a) == len(b) and all(i.keys() == j.keys() and all(same(i[k], j[k]) for k in i) for i, j in zip(a, b))


def test_stream_items_as_read(inputs):
    items = list(SliceStream(inputs["paths"]))
    assert len(items) == 2 + 3
    assert all(set(item) == ITEM_KEYS for item in items)
    tiff_items, nifti_items = items[:2], items[2:]
    assert [item["name"] for item in tiff_items] == ["t2.tif", "t10.tif"]
    for item in tiff_items:
        assert item["is_hu"] is False
        np.testing.assert_array_equal(item["image"], inputs["tiffs"][item["name"]])
    for k, item in enumerate(nifti_items):
        assert item["is_hu"] is True
        assert item["slice_index"] == k and item["z"] == pytest.approx(k)
        assert item["source"] == str(inputs["paths"][1])
        np.testing.assert_array_equal(item["image"], _expected_hu_slice(inputs["volume"], k))


def test_stream_is_re_iterable(inputs):
    stream = SliceStream(inputs["paths"])
    first, second = list(stream), list(stream)
    assert len(first) == 5 and _same_items(first, second)


@pytest.mark.parametrize("workers", [2, 3])
def test_dataloader_workers_share_the_slices_each_once(inputs, workers):
    alone = list(SliceStream(inputs["paths"]))
    loader = torch.utils.data.DataLoader(SliceStream(inputs["paths"]), batch_size=None, num_workers=workers)
    shared = list(loader)
    assert sorted(item["name"] for item in shared) == sorted(item["name"] for item in alone)
    by_name = {item["name"]: item for item in alone}
    for item in shared:
        np.testing.assert_array_equal(np.asarray(item["image"]), by_name[item["name"]]["image"])


def test_stream_transform_windows_hu_slices_only(inputs):
    raw = list(SliceStream(inputs["paths"]))
    windowed = list(SliceStream(inputs["paths"], transform=HUWindowd(keys="image", hu_window=WINDOW)))
    for before, after in zip(raw[:2], windowed[:2]):
        assert after["is_hu"] is False
        np.testing.assert_array_equal(after["image"], before["image"])
    for k, (before, after) in enumerate(zip(raw[2:], windowed[2:])):
        hu = _expected_hu_slice(inputs["volume"], k)
        np.testing.assert_array_equal(after["image"], apply_hu_window(hu, WINDOW))
        np.testing.assert_allclose(after["image"], np.clip((hu + 1000) / 1400, 0, 1), atol=1e-6)
        assert after["is_hu"] is False
        assert (after["name"], after["slice_index"]) == (before["name"], before["slice_index"])


def test_hu_window_leaves_non_hu_items_alone_and_keeps_tensors():
    hu = np.array([[-1500.0, -1000.0, -300.0], [400.0, 900.0, 50.0]], dtype=np.float32)
    expected = np.clip((hu + 1000) / 1400, 0, 1)
    transform = HUWindowd(keys="image", hu_window=WINDOW)
    untouched = transform({"image": hu.copy(), "is_hu": False})
    assert untouched["is_hu"] is False
    np.testing.assert_array_equal(untouched["image"], hu)
    out = transform({"image": torch.from_numpy(hu.copy()), "is_hu": True})
    assert isinstance(out["image"], torch.Tensor) and out["is_hu"] is False
    np.testing.assert_allclose(out["image"].numpy(), expected, atol=1e-6)
    as_array = transform({"image": hu.copy()})  # no is_hu key: taken as HU
    assert isinstance(as_array["image"], np.ndarray)
    np.testing.assert_allclose(as_array["image"], expected, atol=1e-6)


def test_batches_hold_one_image_size_each(tmp_path):
    rng = np.random.default_rng(0)
    for name, shape in (("a.nii.gz", (6, 5, 5)), ("b.nii.gz", (7, 4, 3))):
        nib.save(nib.Nifti1Image(rng.uniform(-1000, 400, shape).astype(np.float32), np.eye(4)), tmp_path / name)
    batches = list(SliceStream(tmp_path, batch_size=2))
    assert [[tuple(item["image"].shape) for item in batch] for batch in batches] == [
        [(5, 6)] * 2, [(5, 6)] * 2, [(5, 6)], [(4, 7)] * 2, [(4, 7)]
    ]  # fmt: skip
    assert [item["name"] for batch in batches for item in batch] == [item["name"] for item in SliceStream(tmp_path)]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        SliceStream(tmp_path, batch_size=0)


def test_batches_collate_the_image_and_keep_every_other_value_as_read(inputs):
    items = list(SliceStream(inputs["paths"][1:], transform=HUWindowd(keys="image", hu_window=WINDOW), batch_size=2))
    batch = collate_slices(items[0])
    assert isinstance(batch["image"], torch.Tensor) and batch["image"].shape == (2, 5, 6)
    assert set(batch) == ITEM_KEYS
    for key in ITEM_KEYS - {"image"}:  # Python values: no tensor per identifier to pass from a worker
        assert batch[key] == [item[key] for item in items[0]] or all(map(math.isnan, batch[key])), key
        assert not any(isinstance(value, torch.Tensor) for value in batch[key]), key
    assert _same_items(decollate_batch(batch), items[0])
    loader = torch.utils.data.DataLoader(
        SliceStream(inputs["paths"], batch_size=2), batch_size=None, num_workers=1, collate_fn=collate_slices
    )
    by_worker = [item for batch in loader for item in decollate_batch(batch)]
    assert _same_items(by_worker, list(SliceStream(inputs["paths"])))


def test_network_threads_leave_each_decoding_worker_a_core():
    cores = network_threads(0)
    assert cores == stream_cores() >= 1 and network_threads(1) == max(1, cores - 1) and network_threads(cores + 3) == 1
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as a finished workflow leaves it: the next run in this process must not shrink
        assert network_threads(0) == cores
    finally:
        torch.set_num_threads(threads)
