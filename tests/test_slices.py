"""Tests of scripts.ctio.slices: one entry point over every input kind, and slice identities."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import tifffile

from scripts.ctio import slices as ct
from scripts.ctio.window import apply_hu_window

# --------------------------------------------------------------------------------------------------------------------
# iter_ct_slices dispatch


def test_dispatch_over_every_input_kind(synthetic_folder, tmp_path):
    root = synthetic_folder["root"]
    skipped: list = []
    folder = list(ct.iter_ct_slices(root, skipped=skipped))
    assert len(folder) == 5 and all(info["kind"] == "dicom" and info["is_hu"] for _, info in folder)
    assert {p.name for p, _ in skipped} == {"notes.txt", "mr.dcm"}

    single = list(ct.iter_ct_slices(root / "b_1"))
    assert len(single) == 1 and single[0][1]["z"] == 10.0

    tif = tmp_path / "slice.tif"
    tifffile.imwrite(tif, np.full((4, 3), 0.25, np.float32))
    ((array, info),) = list(ct.iter_ct_slices(tif, hu_window=(-1000, 400)))
    assert info == {"kind": "image", "source": str(tif), "slice_index": 0, "is_hu": False}
    assert np.all(array == 0.25)

    nib.save(nib.Nifti1Image(np.zeros((3, 3, 2), np.int16), np.eye(4)), tmp_path / "v.nii.gz")
    nifti = list(ct.iter_ct_slices(tmp_path / "v.nii.gz", hu_window=(-1000, 400)))
    assert len(nifti) == 2 and nifti[0][1]["is_hu"] is False
    np.testing.assert_allclose(nifti[0][0], 1000 / 1400)


def test_dispatch_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError):
        next(ct.iter_ct_slices(tmp_path / "absent"))
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match="no CT DICOM slices found. readme.txt: not DICOM"):
        next(ct.iter_ct_slices(tmp_path))


def test_hu_window_is_applied_to_hu_slices_only(synthetic_folder):
    root = synthetic_folder["root"]
    hu = list(ct.iter_ct_slices(root))
    windowed = list(ct.iter_ct_slices(root, hu_window=(-1000, 400)))
    assert len(windowed) == len(hu) == 5
    for (array, info), (reference, reference_info) in zip(windowed, hu):
        assert reference_info["is_hu"] is True and info["is_hu"] is False
        np.testing.assert_array_equal(array, apply_hu_window(reference, (-1000, 400)))


def test_unusable_inputs_are_skipped_with_their_reason_when_skips_are_listed(tmp_path):
    (tmp_path / "empty").mkdir()
    volume = np.zeros((8, 8, 3), dtype=np.float32)
    volume[2, 3, 1] = np.nan  # one bad slice of three
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    tifffile.imwrite(
        tmp_path / "rgb.tif", np.dstack([np.zeros((8, 8)), np.ones((8, 8)), np.zeros((8, 8))]).astype(np.uint8)
    )
    skipped = []
    out = list(ct.iter_ct_slices([tmp_path / "empty", tmp_path / "v.nii.gz", tmp_path / "rgb.tif"], skipped=skipped))
    assert [info["slice_index"] for _, info in out] == [0, 2]
    reasons = {path.name: reason for path, reason in skipped}
    assert reasons["empty"] == "no CT DICOM slices found (0 files, each skipped)"
    assert reasons["v.nii.gz#1"] == "1 NaN or infinite pixel values"
    assert "colour image (3 differing channels); a CT slice is grayscale" in reasons["rgb.tif"]
    with pytest.raises(ValueError, match="NaN or infinite"):  # without a list of skips, the stream stops
        list(ct.iter_ct_slices(tmp_path / "v.nii.gz"))


def test_gray_image_stored_as_rgb_is_read(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    tifffile.imwrite(tmp_path / "gray_rgb.tif", np.dstack([gray] * 3))
    ((array, _),) = list(ct.iter_ct_slices(tmp_path / "gray_rgb.tif"))
    np.testing.assert_allclose(array, gray / 255.0, atol=1e-6)


def test_tiff_stack_and_colour_tiff_are_skipped_with_their_reason_or_stop_in_one_line(tmp_path):
    stack, rgb = tmp_path / "stack.tif", tmp_path / "rgb.tif"
    tifffile.imwrite(stack, np.zeros((3, 32, 32), np.float32), photometric="minisblack")  # three pages
    tifffile.imwrite(rgb, np.dstack([np.zeros((8, 8)), np.ones((8, 8)), np.zeros((8, 8))]).astype(np.uint8))
    tifffile.imwrite(tmp_path / "ok.tif", np.full((4, 4), 0.5, np.float32))
    skipped = []
    out = list(ct.iter_ct_slices(tmp_path, skipped=skipped))
    assert [info["source"] for _, info in out] == [str(tmp_path / "ok.tif")]
    assert skipped == [
        (rgb, "colour image (3 differing channels); a CT slice is grayscale"),
        (
            stack,
            "expected a single 2-D slice, got a TIFF of shape (3, 32, 32) (axes QYX: a stack or volume; give one "
            "slice per file, or the volume as NIfTI)",
        ),
    ]
    for path, words in ((stack, "expected a single 2-D slice"), (rgb, "colour image")):
        with pytest.raises(ValueError, match=f"^{path}: {words}") as error:  # without a list of skips: one line
            list(ct.iter_ct_slices(path))
        assert "\n" not in str(error.value)


def refusing_scandir(real, *paths):
    def scandir(path="."):
        if str(path) in {str(p) for p in paths}:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    return scandir


def test_an_input_folder_that_cannot_be_listed_is_skipped_or_stops_in_one_line(tmp_path, monkeypatch, synthetic_folder):
    # Tests run as root here, where chmod does not stop reads: os.scandir, by which listed_inputs and os.walk list
    # a folder, is made to refuse this one.
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.tif").write_bytes(b"")
    monkeypatch.setattr(os, "scandir", refusing_scandir(os.scandir, locked))
    skipped = []
    out = list(ct.iter_ct_slices([locked, synthetic_folder["root"] / "b_1"], skipped=skipped))
    assert len(out) == 1 and skipped == [(locked, "unreadable (PermissionError: Permission denied)")]
    with pytest.raises(PermissionError, match="Permission denied"):  # without a list of skips: one line (OSError)
        list(ct.iter_ct_slices(locked))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_inputs_by_their_mode_are_skipped_with_their_reason(tmp_path):
    folder, image = tmp_path / "locked", tmp_path / "locked.tif"
    folder.mkdir()
    tifffile.imwrite(image, np.zeros((4, 4), np.float32))
    folder.chmod(0)
    image.chmod(0)
    skipped = []
    try:
        assert list(ct.iter_ct_slices([folder, image], skipped=skipped)) == []
    finally:
        folder.chmod(0o755)
    assert skipped == [
        (folder, "unreadable (PermissionError: Permission denied)"),
        (image, "unreadable (PermissionError: Permission denied)"),
    ]


def test_a_compressed_volume_cut_short_is_skipped_or_stops_in_one_line(tmp_path):
    noise = np.random.default_rng(0).random((16, 16, 4), dtype=np.float32)  # incompressible: the header survives
    nib.save(nib.Nifti1Image(noise, np.eye(4)), tmp_path / "v.nii.gz")
    data = (tmp_path / "v.nii.gz").read_bytes()
    (tmp_path / "v.nii.gz").write_bytes(data[: len(data) // 2])  # gzip then ends early (EOFError)
    skipped = []
    out = list(ct.iter_ct_slices(tmp_path / "v.nii.gz", skipped=skipped))
    assert 0 < len(out) < 4  # the slices read before the cut are whole; the rest is listed
    assert [(path.name, reason.split(" (")[0]) for path, reason in skipped] == [("v.nii.gz", "file cut short")]
    with pytest.raises(ValueError, match="v.nii.gz: file cut short"):
        list(ct.iter_ct_slices(tmp_path / "v.nii.gz"))
