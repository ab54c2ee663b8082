"""Tests of scripts.ctio.nifti: streamed NIfTI slices in the DICOM display layout."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from scripts.ctio import dicom, dicom_pixels
from scripts.ctio import nifti as ct

# --------------------------------------------------------------------------------------------------------------------
# NIfTI


def lps_to_ras_affine(position, row_dir, col_dir, spacing, slice_step) -> np.ndarray:
    """NIfTI affine of a volume v[i=column, j=row, k=slice] built from DICOM geometry (LPS -> RAS)."""
    normal = np.cross(row_dir, col_dir)
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(row_dir) * spacing
    lps[:3, 1] = np.asarray(col_dir) * spacing
    lps[:3, 2] = normal * slice_step
    lps[:3, 3] = position
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def test_nifti_slices_match_the_dicom_layout(synthetic_folder, tmp_path):
    series = dicom.find_dicom_series(synthetic_folder["root"], recursive=False)[0]
    dicom_slices = list(dicom_pixels.iter_series_slices(series))
    volume = np.stack([a.T for a, _ in dicom_slices], axis=-1)  # v[column, row, slice]
    affine = lps_to_ras_affine((0, 0, 0), (1, 0, 0), (0, 1, 0), 0.5, 5.0)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(volume.astype(np.int16), affine), path)
    nifti = list(ct.iter_nifti_slices(path))
    assert len(nifti) == len(dicom_slices)
    for (expected, d_info), (array, n_info) in zip(dicom_slices, nifti):
        assert array.dtype == np.float32 and n_info["is_hu"] and n_info["kind"] == "nifti"
        np.testing.assert_array_equal(array, expected)
        assert n_info["z"] == pytest.approx(d_info["z"])
        assert n_info["pixel_spacing"] == pytest.approx((0.5, 0.5))


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([1.0, 1.0, 1.0, 1.0]),  # RAS already
        np.diag([-0.7, -0.8, -2.5, 1.0]),  # LPI: every axis flipped
        np.array([[0, 0, 2.0, 5], [0, -0.8, 0, 3], [-0.7, 0, 0, 1], [0, 0, 0, 1]]),  # slice axis stored first
    ],
)
def test_nifti_streaming_equals_full_canonical_reorientation(tmp_path, affine):
    data = np.random.default_rng(0).normal(size=(6, 7, 40)).astype(np.float32)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    canonical = nib.as_closest_canonical(nib.load(path))
    ras = canonical.get_fdata(dtype=np.float32)
    out = list(ct.iter_nifti_slices(path))
    assert len(out) == ras.shape[2]
    for k, (array, info) in enumerate(out):
        assert info["slice_index"] == k
        np.testing.assert_array_equal(array, ras[::-1, ::-1, k].T)
    z = [info["z"] for _, info in out]
    assert np.all(np.diff(z) > 0)


def test_nifti_marker_lands_anterior_right(tmp_path):
    """A voxel at the anterior, right, superior corner shows at row 0, column 0 of the last slice."""
    data = np.zeros((4, 5, 3), dtype=np.int16)
    data[3, 4, 2] = 100  # identity affine (RAS+): the largest i is the patient's rightmost, largest j most anterior
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "m.nii")
    slices = [a for a, _ in ct.iter_nifti_slices(tmp_path / "m.nii")]
    assert slices[-1].shape == (5, 4)
    assert slices[-1][0, 0] == 100 and slices[-1].sum() == 100 and slices[0].sum() == 0


def test_nifti_scaling_and_4d_single_volume(tmp_path):
    data = np.arange(2 * 3 * 2, dtype=np.int16).reshape(2, 3, 2, 1)
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_slope_inter(2.0, -1024.0)
    nib.save(image, tmp_path / "s.nii")
    first = next(ct.iter_nifti_slices(tmp_path / "s.nii"))[0]
    np.testing.assert_array_equal(first, (data[::-1, ::-1, 0, 0].T * 2.0 - 1024).astype(np.float32))
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 2, 2), np.int16), np.eye(4)), tmp_path / "t.nii")
    with pytest.raises(ValueError, match="expected a 3-D CT volume"):
        next(ct.iter_nifti_slices(tmp_path / "t.nii"))


def test_a_file_that_is_no_nifti_is_skipped_or_stops_in_one_line(tmp_path):
    from scripts.ctio.slices import iter_ct_slices

    bad = tmp_path / "damaged.nii"
    bad.write_bytes(b"not a nifti header" * 30)
    with pytest.raises(ValueError, match=r"damaged\.nii: not a readable NIfTI volume"):
        next(ct.iter_nifti_slices(bad))
    skipped = []
    assert list(iter_ct_slices([bad], skipped=skipped)) == []
    assert [(p.name, r.split(" (")[0]) for p, r in skipped] == [("damaged.nii", "not a readable NIfTI volume")]
