"""Every transfer syntax of CT archives decodes in the core environment (BSD-licensed plugins only), to the HU of
its uncompressed twin: a real CT slice re-encoded losslessly is equal, lossy encodings stay close, pydicom's test
files equal their twins or the values pydicom's own pixel tests assert. A missing decoder ends ``tfkt-score`` in one
line naming the package to install."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels.decoders import JPEGExtended12BitDecoder
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from scripts.ctio import dicom_pixels as px
from scripts.utils.cli import EXPECTED_ERRORS

from conftest import BUNDLE_ROOT
from dicom_helpers import write_ct_slice

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


def test_jpeg_2000_decodes_with_the_single_threaded_plugin_to_the_pixels_gdcm_gives(tmp_path, monkeypatch):
    path = _reencoded(tmp_path, JPEG2000Lossless)
    assert px.decoding_plugin(JPEG2000Lossless) == "pylibjpeg"
    assert px.decoding_plugin(JPEG2000) == "pylibjpeg"
    assert px.decoding_plugin(RLELossless) == ""  # no preference: pydicom's own order
    assert px.decoding_plugin("1.2.840.10008.1.2.4.92") == ""  # JPEG 2000 Part 2: pydicom has no decoder at all
    used = []
    original = px.pixel_array
    monkeypatch.setattr(px, "pixel_array", lambda *a, **k: used.append(k.get("decoding_plugin")) or original(*a, **k))
    hu = px.read_dicom_hu(path)
    assert used == ["pylibjpeg"]
    gdcm = pydicom.pixels.apply_modality_lut(original(path, decoding_plugin="gdcm"), pydicom.dcmread(path))
    np.testing.assert_array_equal(hu, gdcm)


def refuse(src: bytes, runner) -> bytes:
    """A pydicom decoder plugin that refuses every frame (registered by the test below)."""
    raise ValueError("refused")


def is_available(uid: str) -> bool:  # pydicom plugin protocol, for ``refuse``
    return True


DECODER_DEPENDENCIES: dict = {}


def test_a_file_the_preferred_plugin_refuses_decodes_with_pydicoms_other_plugins(tmp_path, monkeypatch):
    from pydicom.pixels.decoders import JPEG2000LosslessDecoder

    path = _reencoded(tmp_path, JPEG2000Lossless)
    JPEG2000LosslessDecoder.add_plugin("refuses", (__name__, "refuse"))
    try:
        monkeypatch.setitem(px.PREFERRED_PLUGINS, JPEG2000Lossless, "refuses")
        assert px.decoding_plugin(JPEG2000Lossless) == "refuses"
        np.testing.assert_array_equal(px.read_dicom_hu(path), px.read_dicom_hu(CT_SLICE))
    finally:
        JPEG2000LosslessDecoder.remove_plugin("refuses")
    assert px.decoding_plugin(JPEG2000Lossless) == ""  # preferred but not installed


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
     ("MR_small_jp2klossless.dcm", "MR_small.dcm"), ("MR2_J2KR.dcm", "MR2_UNCR.dcm"), ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),
     ("JPEG2000.dcm", "JPEG2000_UNC.dcm")],  # the last: lossy, its twin holds the decoded values
)  # fmt: skip
def test_pydicom_test_files_decode_to_their_uncompressed_twins(compressed, uncompressed):
    """Both through read_dicom_hu: the same modality LUT (none, for these files) on both sides."""
    hu = px.read_dicom_hu(get_testdata_file(compressed))
    np.testing.assert_array_equal(hu, px.read_dicom_hu(get_testdata_file(uncompressed)))
    assert hu.std() > 0


@pytest.mark.parametrize(
    "compressed", ["emri_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm"]
)
def test_multiframe_test_files_decode_frame_by_frame_to_their_twin(compressed):
    """Enhanced MR, 10 frames of 12 bits: each frame read on its own equals that frame of emri_small.dcm."""
    frames = pydicom.dcmread(get_testdata_file(compressed), stop_before_pixels=True).NumberOfFrames
    assert frames == 10
    for frame in (0, 4, 9):
        hu = px.read_dicom_hu(get_testdata_file(compressed), frame)
        np.testing.assert_array_equal(hu, px.read_dicom_hu(get_testdata_file("emri_small.dcm"), frame))
        assert hu.shape == (64, 64) and hu.std() > 0


# Values pydicom's own pixel tests assert for files without an uncompressed twin (pydicom tests/pixels/
# pixels_reference.py, checked there against pylibjpeg, GDCM and pyjpegls): (file, rows, columns, values).
PYDICOM_REFERENCE = [
    ("JPEG-LL.dcm", 400, slice(124, 132), [60, 58, 61, 68, 59, 65, 64, 67]),
    ("JPEG-LL.dcm", 600, slice(124, 132), [3, 1, 2, 0, 2, 1, 2, 0]),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", 300, slice(512, 520), [26, 26, 25, 22, 19, 16, 14, 15]),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", 600, slice(512, 520), [45, 43, 41, 38, 33, 30, 26, 21]),
    ("JPEGLSNearLossless_08.dcm", slice(0, 45, 5), 0, [255, 125, 65, 30, 15, 5, 5, 0, 0]),
    ("JPEGLSNearLossless_16.dcm", slice(0, 45, 5), 0, [65535, 32765, 16385, 4095, 1025, 255, 65, 15, 5]),
    ("JPGExtended.dcm", [420, 230], [140, 120], [244, 95]),  # 12-bit JPEG Extended
    ("JPEG-lossy.dcm", [420, 230], [140, 120], [244, 95]),  # the same, with a bad scan-stop value
]


@pytest.mark.parametrize(
    ("name", "rows", "columns", "values"),
    PYDICOM_REFERENCE,
    ids=[f"{r[0]}-{i}" for i, r in enumerate(PYDICOM_REFERENCE)],
)
def test_pydicom_jpeg_test_files_decode_to_pydicom_reference_values(name, rows, columns, values):
    header = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    hu = px.read_dicom_hu(get_testdata_file(name))
    assert hu.shape == (header.Rows, header.Columns)
    assert hu[rows, columns].tolist() == values


def test_jpeg_ls_near_lossless_stays_within_its_near_bound():
    """JPEGLSNearLossless_16 holds 2**k - 1 ramps encoded with NEAR=2 (from its scan header): each decoded value is
    within NEAR of the original, the exact values of pydicom's reference."""
    path = get_testdata_file("JPEGLSNearLossless_16.dcm")
    frame = next(pydicom.encaps.generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1))
    sos = frame.index(b"\xff\xda")
    near = frame[sos + 5 + 2 * frame[sos + 4]]  # SOS: length (2), Ns (1), Ns x (Ci, Tmi), then NEAR
    assert near == 2
    decoded = px.read_dicom_hu(path)[0:45:5, 0]
    original = np.array([2**k - 1 for k in (16, 15, 14, 12, 10, 8, 6, 4, 2)])
    assert np.abs(decoded - original).max() <= near and not np.array_equal(decoded, original)


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG-lossy.dcm"])
def test_twelve_bit_jpeg_extended_decodes_close_to_the_lossless_original(name):
    """The NEMA NM1 image three ways: 12-bit lossy JPEG (decoded by GDCM, no GPL plugin) against its lossless JPEG."""
    hu = px.read_dicom_hu(get_testdata_file(name))
    original = px.read_dicom_hu(get_testdata_file("JPEG-LL.dcm"))
    assert hu.dtype == np.float32 and hu.shape == original.shape == (1024, 256)
    error = np.abs(hu - original)
    assert error.mean() < 0.15 * original.std() and np.corrcoef(hu.ravel(), original.ravel())[0, 1] > 0.98
    assert error.max() > 0  # lossy: not the lossless file read twice


def test_twelve_bit_jpeg_extended_without_gdcm_names_the_package():
    """pydicom's other plugins refuse 12 bits; without GDCM the error says what to install, not a per-slice skip."""
    JPEGExtended12BitDecoder.remove_plugin(px.JPEG_12_BIT_PLUGIN)
    try:
        with pytest.raises(px.DecoderMissingError, match="12-bit JPEG Extended needs GDCM: pip install python-gdcm"):
            px.read_dicom_hu(get_testdata_file("JPGExtended.dcm"))
    finally:
        JPEGExtended12BitDecoder.add_plugin(px.JPEG_12_BIT_PLUGIN, (px.__name__, "_decode_jpeg_12_bit"))
    assert px.read_dicom_hu(get_testdata_file("JPGExtended.dcm"))[420, 140] == 244


def test_a_damaged_twelve_bit_jpeg_is_a_decode_failure_not_a_missing_decoder(tmp_path):
    """With GDCM in place a 12-bit slice that fails is damaged data: the slice is skipped, the job goes on."""
    dataset = pydicom.dcmread(get_testdata_file("JPGExtended.dcm"))
    frame = next(pydicom.encaps.generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.PixelData = pydicom.encaps.encapsulate([frame[: len(frame) // 50]])
    dataset.save_as(tmp_path / "cut.dcm")
    with pytest.raises(RuntimeError, match="gdcm-12-bit: GDCM decoded 0 bytes, the frame holds 524288") as failure:
        px.read_dicom_hu(tmp_path / "cut.dcm")
    assert not isinstance(failure.value, px.DecoderMissingError)


def test_deflated_explicit_vr_decodes(tmp_path):
    dataset = pydicom.dcmread(CT_SLICE)
    dataset.save_as(tmp_path / "deflated.dcm", implicit_vr=False, little_endian=True)
    dataset = pydicom.dcmread(tmp_path / "deflated.dcm")
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dataset.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "deflated.dcm").file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(px.read_dicom_hu(tmp_path / "deflated.dcm"), px.read_dicom_hu(CT_SLICE))


# --------------------------------------------------------------------------------------------------------------------
# A missing decoder, end to end


def test_missing_decoder_is_an_expected_error():
    assert issubclass(px.DecoderMissingError, ImportError) and issubclass(px.DecoderMissingError, EXPECTED_ERRORS)


# tfkt-score with pydicom's JPEG 2000 decoder stripped of its plugins, as if neither pylibjpeg-openjpeg nor
# python-gdcm were installed; argv[1] is the checkpoint to write first (an untrained tiny network: nothing is scored).
WITHOUT_J2K_PLUGINS = """
import sys
import torch
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000Lossless
from scripts.nets.networks import create_network
from scripts.score import main
torch.save(create_network("hybrid_tiny").state_dict(), sys.argv[1])
decoder = get_decoder(JPEG2000Lossless)
for label in decoder.available_plugins:
    decoder.remove_plugin(label)
sys.exit(main(sys.argv[2:]))
"""


def test_tfkt_score_stops_in_one_line_naming_the_package_when_a_decoder_is_missing(tmp_path):
    series, uid = tmp_path / "j2k", generate_uid()
    series.mkdir()
    for k in range(2):
        path = write_ct_slice(
            series / f"im{k}.dcm", np.full((32, 32), 1000 + k), series_uid=uid, instance=k + 1, position=(0, 0, k)
        )
        dataset = pydicom.dcmread(path)
        dataset.compress(JPEG2000Lossless)
        dataset.save_as(path)
    checkpoint, out = tmp_path / "model.pt", tmp_path / "out"
    argv = [str(series), "--out", str(out), "--checkpoint", str(checkpoint), "--network-preset", "hybrid_tiny"]
    command = [sys.executable, "-c", WITHOUT_J2K_PLUGINS, str(checkpoint), *argv, "--backend", "torch"]
    done = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr[-2000:]  # EXIT_USAGE (a set-up problem): scripts/score.py EXIT_CODES
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: DecoderMissingError: ")
    assert "cannot decode JPEG 2000 Image Compression (Lossless Only) pixel data" in errors[0]
    assert "pip install pylibjpeg-openjpeg" in errors[0]
    assert not (out / "index.csv").exists()


def test_compressed_dicom_samples_each_inputs_first_dicom_file(tmp_path):
    plain, packed, other = (tmp_path / name for name in ("plain", "packed", "other"))
    for folder in (plain / "series", packed, other):
        folder.mkdir(parents=True)
    for k in range(3):  # a folder of uncompressed slices, beside a file that is no DICOM
        write_ct_slice(plain / "series" / f"{k}.dcm", np.zeros((8, 8)), series_uid="1.2.3", instance=k, position=None)
    (plain / "README").write_text("no DICOM")
    _reencoded(packed, JPEG2000Lossless)
    (other / "volume.nii.gz").write_bytes(b"")
    assert px.compressed_dicom([plain]) is False
    assert px.compressed_dicom([packed / "slice.dcm"]) is True and px.compressed_dicom([plain, packed]) is True
    assert px.compressed_dicom([other]) is None
    assert px.compressed_dicom([plain], tries=1) is None  # README, a name DICOM files may have, took the one try
    assert px.compressed_dicom([tmp_path / "none"]) is None
