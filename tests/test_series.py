"""Tests of scripts.series: DICOM series discovery, sorting and HU decoding; NIfTI and image-file streaming."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scripts import series as ct
from scripts.transforms import window_hu

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"


def write_ct_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    series_uid: str,
    instance: int,
    position: tuple[float, float, float] | None,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    modality: str = "CT",
    study_uid: str = "1.2.3.4",
    description: str = "synthetic",
) -> Path:
    """Write a small uncompressed single-frame DICOM slice (int16, RescaleIntercept -1024, slope 1)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = list(position)
        ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = [0.5, 0.5]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def raw_slice(seed: int, shape=(6, 5)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3000, size=shape).astype(np.int16)


@pytest.fixture
def synthetic_folder(tmp_path: Path) -> dict:
    """Series A (3 slices, shuffled names, InstanceNumber against position), series B in a sub-folder, junk files."""
    uid_a, uid_b = generate_uid(), generate_uid()
    raws = {z: raw_slice(int(z)) for z in (10.0, 0.0, 5.0)}
    # File names and instance numbers deliberately disagree with the position order 0, 5, 10.
    for name, instance, z in (("b_1", 3, 10.0), ("c_2", 1, 0.0), ("a_3", 2, 5.0)):
        write_ct_slice(tmp_path / name, raws[z], series_uid=uid_a, instance=instance, position=(0, 0, z))
    (tmp_path / "sub").mkdir()
    for k in range(2):
        write_ct_slice(tmp_path / "sub" / f"s{k}.dcm", raw_slice(100 + k), series_uid=uid_b, instance=k + 1,
                       position=(0, 0, 2.0 * k), description="second")
    (tmp_path / "notes.txt").write_text("not an image")
    write_ct_slice(tmp_path / "mr.dcm", raw_slice(7), series_uid=generate_uid(), instance=1, position=(0, 0, 0),
                   modality="MR")
    return {"root": tmp_path, "uid_a": uid_a, "uid_b": uid_b, "raws": raws}


# --------------------------------------------------------------------------------------------------------------------
# Shared real series


def test_shared_series_sorted_decoded_and_plausible(shared_ct_series):
    found = ct.find_dicom_series(shared_ct_series)
    assert found.skipped == []
    assert len(found) == 1
    series = found[0]
    assert len(series) == 20 and series.sorted_by == "position"
    assert {s.transfer_syntax_uid for s in series.slices} == {J2K_LOSSLESS}

    slices, infos = zip(*ct.iter_series_slices(series))
    z = np.array([info["z"] for info in infos])
    assert np.all(np.diff(z) > 0), "slices must come out strictly ascending along the normal"
    assert np.allclose(np.diff(z), 2.0)  # 2 mm spacing (README)
    volume = np.stack(slices)
    assert volume.dtype == np.float32 and volume.shape == (20, 512, 512)
    assert volume.min() >= -1100 and volume.max() <= 4000
    air = volume[volume < -900]
    assert -1030 < np.median(air) < -970
    assert np.mean((volume > 0) & (volume < 100)) > 0.05, "soft tissue (0..100 HU) should be present"
    assert all(s.std() > 50 for s in slices), "each slice should hold anatomy, not a constant"

    uids = [info["sop_instance_uid"] for info in infos]
    assert all(uids) and len(set(uids)) == 20
    instances = [info["instance_number"] for info in infos]
    assert len(set(instances)) == 20 and np.all(np.diff(instances) < 0)  # this series counts instances downwards
    assert [info["slice_index"] for info in infos] == list(range(20))
    assert all(info["series_description"] == "CT Body 3.0" and info["is_hu"] for info in infos)
    assert any("SeriesInstanceUID missing" in note for note in series.notes)


# --------------------------------------------------------------------------------------------------------------------
# Synthetic series: grouping, skips, sort order, exact HU


def test_find_groups_series_and_lists_skips_with_reasons(synthetic_folder):
    found = ct.find_dicom_series(synthetic_folder["root"])
    expected = sorted([synthetic_folder["uid_a"], synthetic_folder["uid_b"]])
    assert sorted(s.series_instance_uid for s in found) == expected
    reasons = {path.name: reason for path, reason in found.skipped}
    assert set(reasons) == {"notes.txt", "mr.dcm"}
    assert reasons["notes.txt"].startswith("not DICOM")
    assert reasons["mr.dcm"] == "not CT (Modality 'MR')"


def test_non_recursive_search_stays_in_folder(synthetic_folder):
    found = ct.find_dicom_series(synthetic_folder["root"], recursive=False)
    assert [s.series_instance_uid for s in found] == [synthetic_folder["uid_a"]]


def test_slices_sorted_by_position_with_exact_hu(synthetic_folder):
    series = next(s for s in ct.find_dicom_series(synthetic_folder["root"]) if s.series_instance_uid ==
                  synthetic_folder["uid_a"])
    assert [s.path.name for s in series.slices] == ["c_2", "a_3", "b_1"]
    out = list(ct.iter_series_slices(series))
    assert [info["z"] for _, info in out] == [0.0, 5.0, 10.0]
    for array, info in out:
        expected = synthetic_folder["raws"][info["z"]].astype(np.float32) - 1024
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, expected)


def test_window_argument_gives_unit_range(synthetic_folder):
    series = ct.find_dicom_series(synthetic_folder["root"], recursive=False)[0]
    hu = [a for a, _ in ct.iter_series_slices(series)]
    windowed = list(ct.iter_series_slices(series, window=(-1000, 400)))
    for (array, info), reference in zip(windowed, hu):
        assert info["is_hu"] is False and info["window"] == (-1000.0, 400.0)
        np.testing.assert_array_equal(array, window_hu(reference, -1000, 400))


def test_missing_position_falls_back_to_instance_number(tmp_path, caplog):
    uid = generate_uid()
    for name, instance in (("x1", 2), ("x2", 3), ("x3", 1)):
        write_ct_slice(tmp_path / name, raw_slice(instance), series_uid=uid, instance=instance, position=None)
    with caplog.at_level(logging.WARNING, logger="scripts.series"):
        series = ct.find_dicom_series(tmp_path)[0]
    assert series.sorted_by == "instance_number"
    assert [s.instance_number for s in series.slices] == [1, 2, 3]
    assert "lack ImagePositionPatient" in series.notes[0]
    assert "sorted by InstanceNumber" in caplog.text


def test_corrupt_slice_is_skipped_with_reason(synthetic_folder):
    root = synthetic_folder["root"]
    damaged = pydicom.dcmread(root / "a_3")
    damaged.PixelData = damaged.PixelData[:10]
    damaged.save_as(root / "a_3")
    series = ct.find_dicom_series(root, recursive=False)[0]
    skipped: list = []
    out = list(ct.iter_series_slices(series, skipped=skipped))
    assert [info["z"] for _, info in out] == [0.0, 10.0]
    assert len(skipped) == 1 and skipped[0][0].name == "a_3"
    assert skipped[0][1].startswith("pixel data failed to decode")


# --------------------------------------------------------------------------------------------------------------------
# Compressed transfer syntaxes (pydicom-data)


@pytest.mark.parametrize(
    "compressed, uncompressed", [("693_J2KR.dcm", "693_UNCR.dcm"), ("693_J2KI.dcm", "693_UNCI.dcm")]
)
def test_jpeg2000_decodes_to_the_uncompressed_twin(compressed, uncompressed):
    hu = ct.read_dicom_hu(get_testdata_file(compressed))
    np.testing.assert_array_equal(hu, ct.read_dicom_hu(get_testdata_file(uncompressed)))
    assert hu.dtype == np.float32 and hu.shape == (512, 512) and hu.std() > 100


@pytest.mark.parametrize("name", ["explicit_VR-UN.dcm", "J2K_pixelrep_mismatch.dcm"])
def test_other_jpeg2000_files_decode_to_plausible_hu(name):
    hu, info = next(ct.iter_ct_slices(get_testdata_file(name)))
    assert info["is_hu"] and hu.shape == (512, 512)
    assert -2100 <= hu.min() and hu.max() <= 4000 and np.mean((hu > -100) & (hu < 200)) > 0.05


def test_jpeg_lossless_decodes_or_names_the_missing_package():
    path = get_testdata_file("bad_sequence.dcm")
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if pydicom.pixels.get_decoder(syntax).is_available:
        hu = ct.read_dicom_hu(path)
        assert hu.shape == (512, 512) and hu.min() >= -2100
    else:
        with pytest.raises(ct.DecoderMissingError, match="pip install pylibjpeg-libjpeg"):
            ct.read_dicom_hu(path)


def test_missing_decoder_raises_before_the_first_slice(monkeypatch, shared_ct_series):
    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"]

    monkeypatch.setattr(ct, "get_decoder", lambda uid: Unavailable())
    series = ct.find_dicom_series(shared_ct_series)[0]
    with pytest.raises(ct.DecoderMissingError, match="pip install pylibjpeg-openjpeg"):
        next(ct.iter_series_slices(series))


# --------------------------------------------------------------------------------------------------------------------
# Multi-frame (enhanced CT)


def test_enhanced_multiframe_yields_each_frame_in_normal_order(tmp_path):
    source = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    assert ct.find_dicom_series(get_testdata_file("eCT_Supplemental.dcm")).skipped[0][1].startswith("values are not HU")
    source.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleType = "HU"
    source.save_as(tmp_path / "enhanced.dcm")
    out = list(ct.iter_ct_slices(tmp_path / "enhanced.dcm"))
    # IOP (-1,0,0, 0,1,0): the normal points inferior, so frame 1 (z=-149) projects lower than frame 0 (z=-159).
    assert [info["frame"] for _, info in out] == [1, 0]
    assert [info["z"] for _, info in out] == [149.0, 159.0]
    for array, info in out:
        raw = pydicom.pixels.pixel_array(tmp_path / "enhanced.dcm", index=info["frame"])
        np.testing.assert_array_equal(array, raw.astype(np.float32) - 1024)


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
    series = ct.find_dicom_series(synthetic_folder["root"], recursive=False)[0]
    dicom = list(ct.iter_series_slices(series))
    volume = np.stack([a.T for a, _ in dicom], axis=-1)  # v[column, row, slice]
    affine = lps_to_ras_affine((0, 0, 0), (1, 0, 0), (0, 1, 0), 0.5, 5.0)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(volume.astype(np.int16), affine), path)
    nifti = list(ct.iter_nifti_slices(path))
    assert len(nifti) == len(dicom)
    for (expected, d_info), (array, n_info) in zip(dicom, nifti):
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
    (array, info), = list(ct.iter_ct_slices(tif, window=(-1000, 400)))
    assert info == {"kind": "image", "source": str(tif), "slice_index": 0, "is_hu": False, "window": None}
    assert np.all(array == 0.25)

    nib.save(nib.Nifti1Image(np.zeros((3, 3, 2), np.int16), np.eye(4)), tmp_path / "v.nii.gz")
    nifti = list(ct.iter_ct_slices(tmp_path / "v.nii.gz", window=(-1000, 400)))
    assert len(nifti) == 2 and nifti[0][1]["is_hu"] is False
    np.testing.assert_allclose(nifti[0][0], 1000 / 1400)


def test_dispatch_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError):
        next(ct.iter_ct_slices(tmp_path / "absent"))
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match="no CT DICOM slices found. readme.txt: not DICOM"):
        next(ct.iter_ct_slices(tmp_path))


# --------------------------------------------------------------------------------------------------------------------
# 2-D image files


def test_ldctiqac_samples_read_as_unit_range(shared_ldctiqac_samples):
    files = sorted(shared_ldctiqac_samples.glob("*.tiff"))
    assert len(files) == 10
    for path in files:
        array = ct.read_image_file(path)
        raw = tifffile.imread(path)
        assert array.dtype == np.float32 and array.shape == (512, 512)
        assert 0.0 <= array.min() and array.max() <= 1.0
        np.testing.assert_array_equal(array, np.clip(raw, 0, 1))


def test_signed_integer_tiff_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "hu.tif", np.full((4, 4), -1000, np.int16))
    with pytest.raises(ValueError, match="raw CT values"):
        ct.read_image_file(tmp_path / "hu.tif")
