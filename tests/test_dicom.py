"""Tests of scripts.ctio.dicom: series discovery, grouping, sorting, skips and HU decoding."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from scripts.ctio import dicom as ct
from scripts.ctio import dicom_pixels as px
from scripts.ctio.slices import iter_ct_slices

from dicom_helpers import J2K_LOSSLESS, raw_slice, write_ct_slice

# --------------------------------------------------------------------------------------------------------------------
# Shared real series


def test_shared_series_sorted_decoded_and_plausible(shared_ct_series):
    found = ct.find_dicom_series(shared_ct_series)
    assert found.skipped == []
    assert len(found) == 1
    series = found[0]
    assert len(series) == 20 and series.sorted_by == "position"
    assert {s.transfer_syntax_uid for s in series.slices} == {J2K_LOSSLESS}

    slices, infos = zip(*px.iter_series_slices(series))
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
    series = next(
        s for s in ct.find_dicom_series(synthetic_folder["root"]) if s.series_instance_uid == synthetic_folder["uid_a"]
    )
    assert [s.path.name for s in series.slices] == ["c_2", "a_3", "b_1"]
    out = list(px.iter_series_slices(series))
    assert [info["z"] for _, info in out] == [0.0, 5.0, 10.0]
    for array, info in out:
        expected = synthetic_folder["raws"][info["z"]].astype(np.float32) - 1024
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, expected)


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


@pytest.mark.parametrize("keep_instance", [(), ("img10",)])
def test_no_position_and_no_instance_number_sorts_by_natural_file_name(tmp_path, keep_instance):
    # Written in neither natural nor plain-string order; img10 keeps InstanceNumber 1 in the second case, which must
    # not be used since the other slices lack one.
    uid = generate_uid()
    names = ("img10", "img2", "img1")
    for k, name in enumerate(names):
        path = write_ct_slice(tmp_path / name, raw_slice(k), series_uid=uid, instance=k + 1, position=None)
        if name not in keep_instance:
            ds = pydicom.dcmread(path)
            del ds.InstanceNumber
            ds.save_as(path)
    series = ct.find_dicom_series(tmp_path)[0]
    assert [s.path.name for s in series.slices] == ["img1", "img2", "img10"]
    assert series.sorted_by == "file_name" and "sorted by file name" in series.notes[0]
    arrays = [array for array, _ in px.iter_series_slices(series)]
    for array, name in zip(arrays, ["img1", "img2", "img10"]):
        np.testing.assert_array_equal(array, raw_slice(names.index(name)).astype(np.float32) - 1024)


def test_localizer_is_skipped_and_the_rest_of_its_series_kept(tmp_path):
    uid = generate_uid()
    for k in range(3):
        write_ct_slice(tmp_path / f"s{k}.dcm", raw_slice(k), series_uid=uid, instance=k + 1, position=(0, 0, 2.0 * k))
    scout = pydicom.dcmread(tmp_path / "s1.dcm")
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.save_as(tmp_path / "s1.dcm")
    found = ct.find_dicom_series(tmp_path)
    assert len(found) == 1 and [s.path.name for s in found[0].slices] == ["s0.dcm", "s2.dcm"]
    assert [(path.name, "localizer" in reason.lower()) for path, reason in found.skipped] == [("s1.dcm", True)]


def test_corrupt_slice_is_skipped_with_reason(synthetic_folder):
    root = synthetic_folder["root"]
    damaged = pydicom.dcmread(root / "a_3")
    damaged.PixelData = damaged.PixelData[:10]
    damaged.save_as(root / "a_3")
    series = ct.find_dicom_series(root, recursive=False)[0]
    skipped: list = []
    out = list(px.iter_series_slices(series, skipped=skipped))
    assert [info["z"] for _, info in out] == [0.0, 10.0]
    assert len(skipped) == 1 and skipped[0][0].name == "a_3"
    assert skipped[0][1].startswith("pixel data failed to decode")


# --------------------------------------------------------------------------------------------------------------------
# Compressed transfer syntaxes (pydicom-data)


@pytest.mark.parametrize(
    "compressed, uncompressed", [("693_J2KR.dcm", "693_UNCR.dcm"), ("693_J2KI.dcm", "693_UNCI.dcm")]
)
def test_jpeg2000_decodes_to_the_uncompressed_twin(compressed, uncompressed):
    hu = px.read_dicom_hu(get_testdata_file(compressed))
    np.testing.assert_array_equal(hu, px.read_dicom_hu(get_testdata_file(uncompressed)))
    assert hu.dtype == np.float32 and hu.shape == (512, 512) and hu.std() > 100


@pytest.mark.parametrize("name", ["explicit_VR-UN.dcm", "J2K_pixelrep_mismatch.dcm"])
def test_other_jpeg2000_files_decode_to_plausible_hu(name):
    hu, info = next(iter_ct_slices(get_testdata_file(name)))
    assert info["is_hu"] and hu.shape == (512, 512)
    assert -2100 <= hu.min() and hu.max() <= 4000 and np.mean((hu > -100) & (hu < 200)) > 0.05


def test_missing_decoder_raises_before_the_first_slice(monkeypatch, shared_ct_series):
    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"]

    monkeypatch.setattr(px, "get_decoder", lambda uid: Unavailable())
    series = ct.find_dicom_series(shared_ct_series)[0]
    with pytest.raises(px.DecoderMissingError, match="pip install pylibjpeg-openjpeg"):
        next(px.iter_series_slices(series))


# --------------------------------------------------------------------------------------------------------------------
# Multi-frame (enhanced CT)


def test_enhanced_multiframe_yields_each_frame_in_normal_order(tmp_path):
    source = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    assert ct.find_dicom_series(get_testdata_file("eCT_Supplemental.dcm")).skipped[0][1].startswith("values are not HU")
    source.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleType = "HU"
    source.save_as(tmp_path / "enhanced.dcm")
    out = list(iter_ct_slices(tmp_path / "enhanced.dcm"))
    # IOP (-1,0,0, 0,1,0): the normal points inferior, so frame 1 (z=-149) projects lower than frame 0 (z=-159).
    assert [info["frame"] for _, info in out] == [1, 0]
    assert [info["z"] for _, info in out] == [149.0, 159.0]
    for array, info in out:
        raw = pydicom.pixels.pixel_array(tmp_path / "enhanced.dcm", index=info["frame"])
        np.testing.assert_array_equal(array, raw.astype(np.float32) - 1024)


def test_enhanced_ct_acquisition_fields_come_from_the_functional_groups(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    source = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    shared = source.SharedFunctionalGroupsSequence[0]
    shared.PixelValueTransformationSequence[0].RescaleType = "HU"
    shared.CTXRayDetailsSequence = Sequence([Dataset()])
    shared.CTXRayDetailsSequence[0].KVP = 100
    for frame, item in enumerate(source.PerFrameFunctionalGroupsSequence):
        exposure = Dataset()  # per frame, as under tube-current modulation
        exposure.CTDIvol, exposure.ExposureInmAs = 10.0 + frame, 150.0 + frame
        item.CTExposureSequence = Sequence([exposure])
    source.save_as(tmp_path / "enhanced.dcm")
    out = list(iter_ct_slices(tmp_path / "enhanced.dcm"))
    assert len(out) == 2
    for _, info in out:
        frame = info["frame"]
        assert (info["kvp"], info["ctdi_vol"], info["exposure_mas"]) == (100.0, 10.0 + frame, 150.0 + frame)


def test_classic_ct_acquisition_fields_and_a_slice_read_again():
    from scripts.ctio.slices import read_ct_slice, slice_identity

    path = get_testdata_file("CT_small.dcm")
    (hu, info), header = next(iter_ct_slices(path)), pydicom.dcmread(path)
    identity = slice_identity(info, 0)
    assert (identity["kvp"], identity["exposure_mas"]) == (float(header.KVP), float(header.Exposure))
    assert (identity["manufacturer"], identity["convolution_kernel"]) == (header.Manufacturer, header.ConvolutionKernel)
    assert identity["slice_thickness"] == float(header.SliceThickness) and math.isnan(identity["ctdi_vol"])
    again, is_hu = read_ct_slice(identity["source"], int(identity["slice_index"]), None)
    assert is_hu and np.array_equal(again, hu)


def test_duplicate_instances_are_scored_once_and_listed(tmp_path):
    import shutil

    for k in range(3):
        write_ct_slice(tmp_path / f"s{k}.dcm", raw_slice(k), series_uid="1.2.3", instance=k + 1, position=(0, 0, k))
    shutil.copy(tmp_path / "s1.dcm", tmp_path / "s1_copy.dcm")
    found = ct.find_dicom_series(tmp_path)
    assert [s.path.name for s in found[0].slices] == ["s0.dcm", "s1.dcm", "s2.dcm"]
    assert found.skipped == [
        (tmp_path / "s1_copy.dcm", f"duplicate instance: same SOPInstanceUID as {tmp_path / 's1.dcm'}")
    ]


# --------------------------------------------------------------------------------------------------------------------
# Objects that are not CT images, files cut short, missing pixel data or rescale: each file skipped with its reason

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def _reasons(found) -> dict:
    return {path.name: reason for path, reason in found.skipped}


def _edit(path, **changes):
    """Rewrite a DICOM file with attributes changed (a value of None deletes the attribute)."""
    dataset = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path)
    return path


def _encapsulated_pdf(path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ENCAPSULATED_PDF, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.SeriesInstanceUID = "DOC", generate_uid()
    dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
    dataset.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    pydicom.dcmwrite(path, dataset, enforce_file_format=True)
    return path


def test_objects_that_are_not_ct_images_are_skipped_with_their_reason(tmp_path):
    import shutil

    write_ct_slice(tmp_path / "ct.dcm", raw_slice(0), series_uid="1.2.3", instance=1, position=(0, 0, 0))
    for name in ("reportsi.dcm", "rtstruct.dcm", "SC_rgb.dcm"):  # a Basic Text SR, an RT structure set, an OT capture
        shutil.copy(get_testdata_file(name), tmp_path / name)
    sc = write_ct_slice(tmp_path / "sc_ct.dcm", raw_slice(1), series_uid="1.2.3", instance=2, position=(0, 0, 1))
    dataset = pydicom.dcmread(sc)  # a screen capture that calls itself CT (dose screens do)
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    dataset.save_as(sc)
    _encapsulated_pdf(tmp_path / "report.dcm")

    found = ct.find_dicom_series(tmp_path)
    assert [[s.path.name for s in series.slices] for series in found] == [["ct.dcm"]]
    assert _reasons(found) == {
        "reportsi.dcm": "not an image (no pixel matrix; SOP class Basic Text SR Storage)",
        "rtstruct.dcm": "not an image (no pixel matrix; SOP class RT Structure Set Storage)",
        "SC_rgb.dcm": "not CT (Modality 'OT')",
        "sc_ct.dcm": "not a CT image object (SOP class Secondary Capture Image Storage)",
        "report.dcm": "not an image (no pixel matrix; SOP class Encapsulated PDF Storage)",
    }


def test_files_cut_short_on_disk_are_skipped_and_their_intact_copy_kept(tmp_path):
    full = write_ct_slice(tmp_path / "slice.dcm", raw_slice(0, (64, 64)), series_uid="1.2.3", instance=1, position=None)
    data = full.read_bytes()
    pixels_at = len(data) - 64 * 64 * 2  # the pixel data value is the file's last element
    (tmp_path / "cut_header.dcm").write_bytes(data[:200])
    cut = int(0.7 * len(data))
    (tmp_path / "cut_pixels.dcm").write_bytes(data[:cut])  # same SOP instance: sorts before slice.dcm

    found = ct.find_dicom_series(tmp_path)
    assert [s.path.name for s in found[0].slices] == ["slice.dcm"]  # not dropped as a duplicate of a cut copy
    assert _reasons(found) == {
        "cut_header.dcm": "file cut short: it ends inside its file meta header, at byte 200",
        "cut_pixels.dcm": f"file cut short: its pixel data holds {cut - pixels_at} of {64 * 64 * 2} bytes",
    }
    assert _reasons(ct.find_dicom_series(get_testdata_file("rtplan_truncated.dcm"))) == {
        "rtplan_truncated.dcm": "file cut short: it ends inside its header, at byte 2129"
    }


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the UIDs cut short
def test_a_file_cut_at_any_byte_is_skipped_with_a_reason(tmp_path):
    path = write_ct_slice(tmp_path / "full", raw_slice(0), series_uid="1.2.3", instance=1, position=(0, 0, 0))
    data = path.read_bytes()
    path.unlink()
    outcomes = set()
    for size in range(len(data)):
        (tmp_path / "cut").write_bytes(data[:size])
        found = ct.find_dicom_series(tmp_path / "cut", log=False)
        assert not found and len(found.skipped) == 1, f"cut at byte {size} must be skipped"
        outcomes.add(found.skipped[0][1].split(" (")[0].split(":")[0])
    assert "file cut short" in outcomes and outcomes <= {
        "not DICOM",  # the cut leaves no 'DICM' marker
        "file cut short",
        "unreadable DICOM",  # the cut falls inside an element's tag or length
        "damaged CT Image Storage header",  # the cut falls between elements, before Rows and Columns
        "no pixel data",  # the cut falls between elements after them
    }


def test_pixel_data_cut_short_where_headers_cannot_tell_is_skipped_at_decode(tmp_path):
    import shutil

    # JPEG 2000 pixel data has no length in its header; a native slice may be cut after the headers were read.
    data = open(get_testdata_file("693_J2KR.dcm"), "rb").read()
    (tmp_path / "j2k.dcm").write_bytes(data[: int(0.7 * len(data))])
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "native.dcm")
    found = ct.find_dicom_series(tmp_path)
    assert found.skipped == [] and [len(series) for series in found] == [1, 1]
    native = (tmp_path / "native.dcm").read_bytes()
    (tmp_path / "native.dcm").write_bytes(native[: int(0.7 * len(native))])
    skipped: list = []
    assert [out for series in found for out in px.iter_series_slices(series, skipped)] == []
    assert sorted(path.name for path, _ in skipped) == ["j2k.dcm", "native.dcm"]
    assert all(reason.startswith("pixel data failed to decode") for _, reason in skipped)


def test_ct_header_without_pixel_data_is_skipped_at_discovery(tmp_path):
    path = write_ct_slice(tmp_path / "header_only.dcm", raw_slice(0), series_uid="1.2.3", instance=1, position=None)
    _edit(path, PixelData=None)
    found = ct.find_dicom_series(tmp_path)
    assert not found and _reasons(found) == {"header_only.dcm": "no pixel data: the file ends after its header"}


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"RescaleSlope": None, "RescaleIntercept": None}, "no RescaleSlope/RescaleIntercept"),
        ({"RescaleIntercept": None}, "no RescaleIntercept"),
        ({"RescaleSlope": ""}, "no RescaleSlope"),  # present but empty, as some anonymisers leave it
    ],
)
def test_ct_slice_without_rescale_is_skipped_since_its_values_are_not_hu(tmp_path, changes, reason):
    path = write_ct_slice(tmp_path / "raw.dcm", raw_slice(0), series_uid="1.2.3", instance=1, position=None)
    _edit(path, **changes)
    found = ct.find_dicom_series(tmp_path)
    assert not found and _reasons(found) == {"raw.dcm": f"{reason}: stored values are not Hounsfield units"}


def test_a_modality_lut_stands_in_for_the_rescale(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    path = write_ct_slice(tmp_path / "lut.dcm", raw_slice(0), series_uid="1.2.3", instance=1, position=None)
    lut = Dataset()
    lut.LUTDescriptor, lut.ModalityLUTType = [4096, 0, 16], "HU"
    lut.add_new("LUTData", "US", [2 * value for value in range(4096)])  # stored value -> twice it
    _edit(path, RescaleSlope=None, RescaleIntercept=None, RescaleType=None, ModalityLUTSequence=Sequence([lut]))
    found = ct.find_dicom_series(tmp_path)
    assert found.skipped == [] and len(found) == 1
    ((hu, _),) = list(px.iter_series_slices(found[0]))
    np.testing.assert_array_equal(hu, 2 * raw_slice(0).astype(np.float32))


def test_enhanced_ct_without_pixel_value_transformation_is_skipped(tmp_path):
    source = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    del source.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
    source.save_as(tmp_path / "enhanced.dcm")
    found = ct.find_dicom_series(tmp_path)
    assert _reasons(found) == {
        "enhanced.dcm": "no RescaleSlope/RescaleIntercept: stored values are not Hounsfield units"
    }


def test_missing_modality_is_not_ct(tmp_path):
    _edit(write_ct_slice(tmp_path / "x.dcm", raw_slice(0), series_uid="1.2", instance=1, position=None), Modality=None)
    assert _reasons(ct.find_dicom_series(tmp_path)) == {"x.dcm": "not CT (Modality '')"}


# --------------------------------------------------------------------------------------------------------------------
# Slices of another matrix size in a series


@pytest.mark.parametrize("sizes, kept", [([8, 8, 8, 6, 6], 8), ([6, 8, 6, 8], 8)], ids=["most", "tie: larger"])
def test_slices_of_another_matrix_size_are_skipped_from_their_series(tmp_path, sizes, kept):
    for k, size in enumerate(sizes):
        write_ct_slice(
            tmp_path / f"s{k}.dcm", raw_slice(k, (size, size)), series_uid="1.2.3", instance=k + 1, position=(0, 0, k)
        )
    found = ct.find_dicom_series(tmp_path)
    (series,) = found
    assert [s.path.name for s in series.slices] == [f"s{k}.dcm" for k, size in enumerate(sizes) if size == kept]
    n_kept, other = sizes.count(kept), 14 - kept
    assert _reasons(found) == {
        f"s{k}.dcm": f"matrix size differs from the rest of its series: {other}x{other}, where {n_kept} of "
        f"{len(sizes)} slices are {kept}x{kept}"
        for k, size in enumerate(sizes)
        if size != kept
    }
    assert any(f"only the {kept}x{kept} slices are kept" in note for note in series.notes)
    assert [hu.shape for hu, _ in px.iter_series_slices(series)] == [(kept, kept)] * n_kept


# --------------------------------------------------------------------------------------------------------------------
# Files and folders that cannot be read


def _series_with_a_subfolder(root):
    for k, folder in enumerate((root, root / "sub", root / "sub")):
        folder.mkdir(exist_ok=True)
        write_ct_slice(folder / f"s{k}.dcm", raw_slice(k), series_uid="1.2.3", instance=k + 1, position=(0, 0, k))
    return root


def refusing(real, *paths):
    """``real`` (open, os.scandir...), but raising PermissionError for ``paths`` as the system does."""
    refused = {str(path) for path in paths}

    def call(path=".", *args, **kwargs):
        if str(path) in refused:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    return call


def test_unreadable_file_and_subfolder_are_listed_with_their_reason(tmp_path, monkeypatch):
    # Tests run as root here, where chmod does not stop reads: the very calls that read are made to refuse, the
    # open() by which dicom.py reads a file and the os.scandir() by which os.walk lists a folder.
    import builtins

    root = _series_with_a_subfolder(tmp_path)
    write_ct_slice(root / "locked.dcm", raw_slice(9), series_uid="1.2.3", instance=9, position=(0, 0, 9))
    monkeypatch.setattr(ct, "open", refusing(builtins.open, root / "locked.dcm"), raising=False)
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", refusing(real_scandir, root / "sub"))
    found = ct.find_dicom_series(root)
    assert [s.path.name for s in found[0].slices] == ["s0.dcm"]
    assert sorted(found.skipped) == [
        (root / "locked.dcm", "unreadable (PermissionError: Permission denied)"),
        (root / "sub", "folder not searched: unreadable (PermissionError: Permission denied)"),
    ]
    monkeypatch.setattr(os, "scandir", refusing(real_scandir, root))
    with pytest.raises(PermissionError):  # the input folder itself: its caller skips it or stops (test_slices.py)
        ct.find_dicom_series(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_and_subfolder_by_their_mode_are_listed(tmp_path):
    root = _series_with_a_subfolder(tmp_path)
    write_ct_slice(root / "locked.dcm", raw_slice(9), series_uid="1.2.3", instance=9, position=(0, 0, 9))
    (root / "locked.dcm").chmod(0)
    (root / "sub").chmod(0)
    try:
        found = ct.find_dicom_series(root)
    finally:
        (root / "sub").chmod(0o755)
    assert [s.path.name for s in found[0].slices] == ["s0.dcm"]
    assert sorted(found.skipped) == [
        (root / "locked.dcm", "unreadable (PermissionError: Permission denied)"),
        (root / "sub", "folder not searched: unreadable (PermissionError: Permission denied)"),
    ]


def test_links_that_are_not_followed_are_listed(tmp_path):
    root = _series_with_a_subfolder(tmp_path / "in")
    elsewhere = _series_with_a_subfolder(tmp_path / "elsewhere")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "gone.dcm").symlink_to(tmp_path / "absent.dcm")
    found = ct.find_dicom_series(root)
    assert len(found[0]) == 3
    assert _reasons(found) == {
        "gone.dcm": "broken link",
        "linked": "link to a folder: not followed (give its target as an input)",
    }


def test_single_frame_enhanced_ct_takes_its_rescale_from_its_per_frame_group(tmp_path):
    source = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    transform = source.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    transform.RescaleType = "HU"  # the shared group's item says 'US'; moved per frame it is read as the frame's own
    slope, intercept = float(transform.RescaleSlope), float(transform.RescaleIntercept)
    raw = source.pixel_array[0]
    del source.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
    source.PerFrameFunctionalGroupsSequence = source.PerFrameFunctionalGroupsSequence[:1]
    source.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence = [transform]
    source.NumberOfFrames = 1
    source.PixelData = raw.tobytes()
    source.save_as(tmp_path / "one_frame.dcm")
    (series,) = ct.find_dicom_series(tmp_path)
    assert [s.frame for s in series.slices] == [None]
    hu = px.read_dicom_hu(tmp_path / "one_frame.dcm")
    np.testing.assert_allclose(hu, raw * slope + intercept)
    assert slope != 1 or intercept != 0, "a rescale that changes the values, so the test can fail"
