"""Tests of scripts.ctio.slices: one entry point over every input kind, and slice identities."""

from __future__ import annotations

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
