"""scripts.ctio.kinds: input kind by file name, natural file order and what a path stands for."""

import pytest

from scripts.ctio.kinds import file_kind, listed_inputs, natural_key


@pytest.mark.parametrize(
    "name, kind",
    [
        ("vol.nii", "nifti"),
        ("vol.nii.gz", "nifti"),
        ("VOL.NII.GZ", "nifti"),
        ("slice.tif", "image"),
        ("slice.TIFF", "image"),
        ("photo.png", "image"),
        ("photo.jpeg", "image"),
        ("IM0001.dcm", "dicom"),
        ("IM0001", "dicom"),
        ("CT.1.2.840.113619.2.55.3", "dicom"),  # UID-named: the "suffix" .3 is numeric
        ("notes.txt", None),
        ("archive.gz", None),
        ("table.csv", None),
    ],
)
def test_file_kind_by_name(name, kind):
    assert file_kind(name) == kind
    assert file_kind(f"/some/folder.d/{name}") == kind


def test_natural_key_orders_numbers_by_value():
    names = ["img10.tif", "img2.tif", "img1.tif", "a20_img3", "a3_img30", "a3_img4"]
    assert sorted(names, key=natural_key) == ["a3_img4", "a3_img30", "a20_img3", "img1.tif", "img2.tif", "img10.tif"]


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # only names are looked at


def test_folder_of_images_and_volumes_lists_images_first_each_in_natural_order(tmp_path):
    _touch(tmp_path, "vol10.nii", "s10.png", "vol2.nii.gz", "s2.tif", "s1.TIFF", "notes.txt", "IM5")
    (tmp_path / "sub.tif").mkdir()  # a folder is never listed, whatever its name
    names = [p.name for p in listed_inputs(tmp_path)]
    assert names == ["s1.TIFF", "s2.tif", "s10.png", "vol2.nii.gz", "vol10.nii"]
    assert all(p.parent == tmp_path for p in listed_inputs(tmp_path))


def test_dicom_folder_and_single_files_stand_for_themselves(tmp_path):
    dicom = tmp_path / "series"
    _touch(dicom, "IM1", "IM2.dcm", "CT.1.2.3")
    assert listed_inputs(dicom) == [dicom]
    _touch(tmp_path, "one.tif", "vol.nii.gz")
    for single in (dicom / "IM1", tmp_path / "one.tif", tmp_path / "vol.nii.gz"):
        assert listed_inputs(single) == [single]
    assert listed_inputs(str(dicom)) == [dicom]


def test_a_folder_that_cannot_be_listed_stands_for_itself(tmp_path, monkeypatch):
    # Tests run as root here, where chmod does not stop reads: os.scandir, by which listed_inputs lists a folder,
    # is made to refuse; the reader then lists it again and reports why (tests/test_slices.py).
    import os

    _touch(tmp_path / "images", "s1.tif", "s2.tif")
    real = os.scandir

    def scandir(path="."):
        if str(path) == str(tmp_path / "images"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert listed_inputs(tmp_path / "images") == [tmp_path / "images"]
