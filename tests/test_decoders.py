"""Every transfer syntax of CT archives decodes in the core environment (BSD-licensed plugins only), to the HU of
its uncompressed twin: a real CT slice re-encoded losslessly is equal, lossy encodings stay close."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from scripts.ctio import dicom_pixels as px

CT_SLICE = get_testdata_file("CT_small.dcm")  # 128x128 CT, 16-bit signed, RescaleIntercept/Slope to HU


def _reencoded(tmp_path, uid, **kwargs):
    dataset = pydicom.dcmread(CT_SLICE)
    dataset.compress(uid, **kwargs)
    dataset.save_as(tmp_path / "slice.dcm")
    return tmp_path / "slice.dcm"


def _gdcm_reencoded(tmp_path, source, syntax: str):
    """JPEG lossless/baseline files via GDCM's encoder (pydicom 3.0 has none for them)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(tmp_path / "slice.dcm"))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return tmp_path / "slice.dcm"


@pytest.mark.parametrize("uid", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda uid: uid.name)
def test_lossless_encodings_of_a_ct_slice_decode_to_its_exact_hu(tmp_path, uid):
    path = _reencoded(tmp_path, uid)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == uid
    np.testing.assert_array_equal(px.read_dicom_hu(path), px.read_dicom_hu(CT_SLICE))


def test_jpeg_lossless_process_14_decodes_to_the_exact_hu(tmp_path):
    """The most common lossless syntax in CT archives (process 14, selection value 1)."""
    path = _gdcm_reencoded(tmp_path, CT_SLICE, "JPEGLosslessProcess14_1")
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert syntax == pydicom.uid.JPEGLosslessSV1
    hu = px.read_dicom_hu(path)
    np.testing.assert_array_equal(hu, px.read_dicom_hu(CT_SLICE))
    assert hu.min() < -500 and hu.max() > 500  # real HU, not raw stored values


@pytest.mark.parametrize(
    ("uid", "kwargs", "max_error"),
    [(JPEGLSNearLossless, {"jls_error": 3}, 3.0), (JPEG2000, {"j2k_cr": [8]}, None)],
    ids=["JPEG-LS near-lossless", "JPEG 2000 lossy"],
)
def test_lossy_encodings_decode_close_to_the_original(tmp_path, uid, kwargs, max_error):
    original = px.read_dicom_hu(CT_SLICE)
    hu = px.read_dicom_hu(_reencoded(tmp_path, uid, **kwargs))
    error = np.abs(hu - original)
    if max_error is not None:
        assert error.max() <= max_error  # JPEG-LS near-lossless bounds every pixel's error
    assert error.mean() < 0.05 * original.std() and not np.array_equal(hu, original)


def test_jpeg_baseline_8_bit_decodes_close_to_its_source(tmp_path):
    source = get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm")  # 8-bit grayscale
    path = _gdcm_reencoded(tmp_path, source, "JPEGBaselineProcess1")
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    reference = px.read_dicom_hu(source)
    assert np.abs(px.read_dicom_hu(path) - reference).mean() < 0.05 * reference.std()


@pytest.mark.parametrize(
    ("compressed", "uncompressed"),
    [("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"), ("MR_small_RLE.dcm", "MR_small.dcm"),
     ("MR2_J2KR.dcm", "MR2_UNCR.dcm"), ("RG1_J2KR.dcm", "RG1_UNCR.dcm")],
)  # fmt: skip
def test_pydicom_test_files_decode_to_their_uncompressed_twins(compressed, uncompressed):
    np.testing.assert_array_equal(
        px.read_dicom_hu(get_testdata_file(compressed)), px.read_dicom_hu(get_testdata_file(uncompressed))
    )


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEGLSNearLossless_16.dcm"])
def test_pydicom_jpeg_test_files_decode(name):
    header = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    assert px.read_dicom_hu(get_testdata_file(name)).shape == (header.Rows, header.Columns)


def test_deflated_explicit_vr_decodes(tmp_path):
    dataset = pydicom.dcmread(CT_SLICE)
    dataset.save_as(tmp_path / "deflated.dcm", implicit_vr=False, little_endian=True)
    dataset = pydicom.dcmread(tmp_path / "deflated.dcm")
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dataset.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "deflated.dcm").file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(px.read_dicom_hu(tmp_path / "deflated.dcm"), px.read_dicom_hu(CT_SLICE))


def test_twelve_bit_jpeg_extended_names_the_plugin_that_decodes_it():
    with pytest.raises(px.DecoderMissingError, match="12-bit JPEG Extended needs the pylibjpeg-libjpeg plugin"):
        px.read_dicom_hu(get_testdata_file("JPEG-lossy.dcm"))
