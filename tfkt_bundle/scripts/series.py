"""Stream CT slices one at a time from DICOM series, NIfTI volumes and single 2-D image files.

Nothing here loads a whole volume: a 1,000-slice series is read header by header, then decoded slice by slice.
Every file or slice that cannot be used is skipped on its own, with its reason logged and listed, never silently.

Conventions shared by all sources:

- A slice is a float32 array of shape (H, W). CT sources give Hounsfield units (``info["is_hu"]`` is True) unless a
  ``window`` is passed, in which case they are windowed to [0, 1] with :func:`scripts.transforms.window_hu`.
  2-D image files (LDCTIQAC float TIFF, PNG, ...) are already in [0, 1] (``is_hu`` False).
- In-plane orientation: rows run anterior -> posterior and columns run from the patient's right to left, i.e. the
  radiological display of an axial slice. A DICOM slice is returned as stored, which for the usual axial
  ImageOrientationPatient (1, 0, 0, 0, 1, 0) is exactly this; NIfTI slices are rotated into the same layout.
- Slice order and ``info["z"]``: DICOM slices are sorted by their position along the slice normal
  (row direction x column direction, dotted with ImagePositionPatient). For the usual axial orientation this is
  the patient's superior coordinate in mm, so the order runs inferior -> superior. NIfTI slices come in RAS order
  along the superior axis and ``z`` is the superior world coordinate of the slice centre, so the two agree.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder, pixel_array
from pydicom.tag import Tag

LOGGER = logging.getLogger(__name__)

CT_SOP_CLASS_UIDS = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
UNIT_RANGE_TOLERANCE = 1e-3
# ITU-R BT.601 luma weights: the same as Pillow's convert("L") and OpenCV, computed in float without 8-bit rounding.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Two slices closer than this along the normal are reported as sharing a position (DICOM DS has ~1e-5 mm precision).
POSITION_TOLERANCE_MM = 1e-3
NIFTI_GZIP_BACKWARD_BLOCK = 32

Skip = tuple[Path, str]


class DecoderMissingError(RuntimeError):
    """Raised when pixel data needs a decoder plugin that is not installed (an environment problem, not a data one)."""


class _SkipItem(Exception):
    """Internal: one file or slice is unusable; the message is the reason."""


@dataclass(frozen=True)
class DicomSlice:
    """Header facts of one 2-D slice: a single-frame file, or one frame of a multi-frame file.

    Attributes:
        path: file holding the slice.
        sop_instance_uid: SOPInstanceUID (from the file meta header when the dataset's own is empty).
        instance_number: InstanceNumber, or None when absent.
        z: position along the slice normal in mm (see the module docstring), or None without geometry.
        frame: 0-based frame index in a multi-frame file; None for a single-frame file.
        transfer_syntax_uid: how the pixel data is encoded (decides the decoder plugin).
        pixel_spacing: (row spacing, column spacing) in mm, or None.
        orientation: ImageOrientationPatient (6 floats), or None.
    """

    path: Path
    sop_instance_uid: str
    instance_number: int | None
    z: float | None
    frame: int | None
    transfer_syntax_uid: str
    pixel_spacing: tuple[float, float] | None = None
    orientation: tuple[float, ...] | None = None


@dataclass
class DicomSeries:
    """One CT series, slices sorted (see ``sorted_by`` and ``notes`` for how and why)."""

    series_instance_uid: str
    study_instance_uid: str
    series_description: str
    slices: list[DicomSlice] = field(default_factory=list)
    sorted_by: str = "position"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.slices)


class DicomSeriesList(list):
    """The series found in a folder (a plain list of :class:`DicomSeries`) plus ``skipped``: (path, reason) pairs."""

    def __init__(self, series: Sequence[DicomSeries] = (), skipped: Sequence[Skip] = ()):
        super().__init__(series)
        self.skipped: list[Skip] = list(skipped)


# --------------------------------------------------------------------------------------------------------------------
# DICOM headers: finding, grouping and sorting series


def find_dicom_series(folder: str | os.PathLike, recursive: bool = True) -> DicomSeriesList:
    """Find the CT series in a folder (or one file) from headers only, slices sorted along the slice normal.

    Files that are not DICOM, not images, not CT or not in Hounsfield units are skipped one by one, each with its
    reason logged and listed in ``result.skipped``. Pixel data is not read.

    Args:
        folder: a folder of DICOM files, or a single DICOM file.
        recursive: also search sub-folders.

    Returns:
        A list of :class:`DicomSeries` (ordered by series description and UID) with a ``skipped`` attribute.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    groups: dict[str, DicomSeries] = {}
    skipped: list[Skip] = []
    for path in _candidate_files(root, recursive):
        try:
            header = _read_header(path)
            _check_ct_image(header)
            slices = _slices_of(header, path)
            key, note = _series_key(header, path)
            if key not in groups:
                groups[key] = _new_series(header, note)
            groups[key].slices.extend(slices)
        except _SkipItem as reason:
            _record_skip(skipped, path, str(reason))
        except Exception as err:  # a header pydicom parsed but whose values do not convert: one unusable file
            _record_skip(skipped, path, f"unusable DICOM header ({type(err).__name__}: {err})")
    for series in groups.values():
        _sort_series(series)
    ordered = sorted(groups.values(), key=lambda s: (s.series_description, s.series_instance_uid))
    return DicomSeriesList(ordered, skipped)


def _candidate_files(root: Path, recursive: bool) -> list[Path]:
    if root.is_file():
        return [root]
    pattern = "**/*" if recursive else "*"
    return sorted((p for p in root.glob(pattern) if p.is_file()), key=_natural_key)


def _natural_key(path: Path) -> list:
    # "img10" after "img9": file-name order is the last-resort slice order, so make it the human one.
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", str(path))]


def _record_skip(skipped: list[Skip], path: Path, reason: str) -> None:
    LOGGER.warning("skipped %s: %s", path, reason)
    skipped.append((path, reason))


def _read_header(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    except Exception as err:  # pydicom raises many types on damaged files; each is one unusable file
        raise _SkipItem(f"unreadable DICOM ({type(err).__name__}: {err})") from None
    if not _looks_like_raw_dicom(path):
        raise _SkipItem("not DICOM (no 'DICM' file marker)")
    try:  # files without the 128-byte preamble (old exports) start directly with a group 0002/0008 element
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as err:
        raise _SkipItem(f"not DICOM ({type(err).__name__}: {err})") from None


def _looks_like_raw_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError:
        return False
    return start[:2] in (b"\x08\x00", b"\x02\x00") and len(start) == 4


def _sop_class_uid(header: Dataset) -> str:
    uid = str(header.get("SOPClassUID", "") or "")
    return uid or str(getattr(header, "file_meta", Dataset()).get("MediaStorageSOPClassUID", "") or "")


def _check_ct_image(header: Dataset) -> None:
    """Raise _SkipItem unless the header describes a grayscale CT image in Hounsfield units."""
    if "Rows" not in header or "Columns" not in header:
        raise _SkipItem(f"not an image (no pixel matrix; SOP class {_sop_class_uid(header) or 'unknown'})")
    modality = str(header.get("Modality", "") or "")
    if modality != "CT":
        raise _SkipItem(f"not CT (Modality {modality!r})")
    sop_class = _sop_class_uid(header)
    if sop_class and sop_class not in CT_SOP_CLASS_UIDS:
        raise _SkipItem(f"not a CT image object (SOP class {pydicom.uid.UID(sop_class).name})")
    if int(header.get("SamplesPerPixel", 1) or 1) != 1:
        raise _SkipItem(f"not grayscale (SamplesPerPixel {header.SamplesPerPixel})")
    if "LOCALIZER" in [str(v).upper() for v in _multi(header.get("ImageType"))]:
        raise _SkipItem("localizer (scout) image, not an axial slice")
    rescale_type = str(_group_attr(header, None, "PixelValueTransformationSequence", "RescaleType") or "HU")
    if rescale_type.upper() != "HU":
        raise _SkipItem(f"values are not HU (RescaleType {rescale_type!r})")


def _multi(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def _group_attr(header: Dataset, frame: int | None, sequence: str, keyword: str):
    """Read ``keyword`` from the dataset, else from an enhanced multi-frame functional group (per-frame first)."""
    if keyword in header:
        return header.get(keyword)
    items = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in header:
        items.append(header.PerFrameFunctionalGroupsSequence[frame])
    if "SharedFunctionalGroupsSequence" in header:
        items.append(header.SharedFunctionalGroupsSequence[0])
    for item in items:
        if sequence in item and len(item[sequence].value) and keyword in item[sequence].value[0]:
            return item[sequence].value[0].get(keyword)
    return None


def _series_key(header: Dataset, path: Path) -> tuple[str, str | None]:
    uid = str(header.get("SeriesInstanceUID", "") or "")
    if uid:
        return uid, None
    # Anonymised exports sometimes blank the UIDs: fall back to what still tells series apart.
    parts = (
        str(path.parent),
        str(header.get("FrameOfReferenceUID", "") or ""),
        str(header.get("SeriesNumber", "") or ""),
        str(header.get("SeriesDescription", "") or ""),
    )
    note = "SeriesInstanceUID missing: grouped by folder, FrameOfReferenceUID, SeriesNumber and SeriesDescription"
    return "no-uid:" + "|".join(parts), note


def _new_series(header: Dataset, note: str | None) -> DicomSeries:
    series = DicomSeries(
        series_instance_uid=str(header.get("SeriesInstanceUID", "") or ""),
        study_instance_uid=str(header.get("StudyInstanceUID", "") or ""),
        series_description=str(header.get("SeriesDescription", "") or ""),
    )
    if note:
        LOGGER.warning("%s (%s)", note, series.series_description or "no description")
        series.notes.append(note)
    return series


def _slices_of(header: Dataset, path: Path) -> list[DicomSlice]:
    sop_uid = str(header.get("SOPInstanceUID", "") or "")
    sop_uid = sop_uid or str(header.file_meta.get("MediaStorageSOPInstanceUID", "") or "")
    syntax = str(header.file_meta.get("TransferSyntaxUID", "") or "")
    if not syntax:
        raise _SkipItem("no TransferSyntaxUID in the file meta header: pixel encoding unknown")
    n_frames = int(header.get("NumberOfFrames", 1) or 1)
    frames: list[int | None] = [None] if n_frames == 1 else list(range(n_frames))
    return [
        DicomSlice(
            path=path,
            sop_instance_uid=sop_uid,
            instance_number=_as_int(header.get("InstanceNumber")),
            z=_slice_z(header, frame),
            frame=frame,
            transfer_syntax_uid=syntax,
            pixel_spacing=_floats(_group_attr(header, frame, "PixelMeasuresSequence", "PixelSpacing"), 2),
            orientation=_floats(_group_attr(header, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
        )
        for frame in frames
    ]


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(value, count: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == count and all(math.isfinite(v) for v in out) else None


def _slice_z(header: Dataset, frame: int | None) -> float | None:
    orientation = _floats(_group_attr(header, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    position = _floats(_group_attr(header, frame, "PlanePositionSequence", "ImagePositionPatient"), 3)
    if orientation is None or position is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(normal, position))


def _sort_series(series: DicomSeries) -> None:
    slices = series.slices
    reason = _position_problem(slices)
    if reason is None:
        series.slices = sorted(slices, key=lambda s: (s.z, _instance_or_inf(s), s.frame or 0))
        series.sorted_by = "position"
        _note_shared_positions(series)
        return
    if all(s.instance_number is not None for s in slices):
        series.slices = sorted(slices, key=lambda s: (s.instance_number, s.frame or 0, _natural_key(s.path)))
        series.sorted_by = "instance_number"
        note = f"sorted by InstanceNumber: {reason}"
    else:
        series.slices = sorted(slices, key=lambda s: (_natural_key(s.path), s.frame or 0))
        series.sorted_by = "file_name"
        note = f"sorted by file name: {reason} and InstanceNumber is missing"
    LOGGER.warning("series %s: %s", series.series_description or series.series_instance_uid, note)
    series.notes.append(note)


def _instance_or_inf(item: DicomSlice) -> float:
    return item.instance_number if item.instance_number is not None else math.inf


def _position_problem(slices: list[DicomSlice]) -> str | None:
    missing = sum(s.z is None for s in slices)
    if missing:
        return f"{missing} of {len(slices)} slices lack ImagePositionPatient/ImageOrientationPatient"
    first = np.asarray(slices[0].orientation)
    if any(not np.allclose(s.orientation, first, atol=1e-4) for s in slices):
        return "slices have different ImageOrientationPatient, so no common normal"
    return None


def _note_shared_positions(series: DicomSeries) -> None:
    z = np.array([s.z for s in series.slices])
    shared = int(np.sum(np.diff(z) < POSITION_TOLERANCE_MM)) if len(z) > 1 else 0
    if shared:
        note = f"{shared} slices share a position with their neighbour (several acquisitions in one series?)"
        LOGGER.warning("series %s: %s", series.series_description or series.series_instance_uid, note)
        series.notes.append(note)


# --------------------------------------------------------------------------------------------------------------------
# DICOM pixels: decoding slice by slice


def check_decoders(transfer_syntax_uids: Sequence[str]) -> None:
    """Raise :class:`DecoderMissingError` naming the package to install if a transfer syntax cannot be decoded.

    Syntaxes that pydicom does not support at all are left to the per-slice decode, which skips them with a reason.
    """
    for uid in sorted(set(transfer_syntax_uids)):
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            continue
        if not decoder.is_available:
            name = pydicom.uid.UID(uid).name
            needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise DecoderMissingError(
                f"cannot decode {name} pixel data: no decoder plugin is installed "
                f"(pip install {_decoder_package(name)}; pydicom's plugins need: {needs})"
            )


def _decoder_package(syntax_name: str) -> str:
    """The usual pip package for a transfer syntax (pydicom names plugins, not always their pip names)."""
    name = syntax_name.lower()
    if "2000" in name:
        return "pylibjpeg-openjpeg"
    if "jpeg-ls" in name:
        return "pyjpegls"
    if "jpeg" in name:
        return "pylibjpeg-libjpeg"
    if "rle" in name:
        return "pylibjpeg-rle"
    return "python-gdcm"


def read_dicom_hu(path: str | os.PathLike, frame: int | None = None) -> np.ndarray:
    """Decode one DICOM slice (or one frame) to Hounsfield units as float32 (H, W).

    Only the requested frame is read from disk. RescaleSlope/Intercept (or a Modality LUT, or for enhanced
    multi-frame files the frame's Pixel Value Transformation) are applied with pydicom's ``apply_modality_lut``.

    Args:
        path: a DICOM file.
        frame: 0-based frame index for multi-frame files; None for a single-frame file.

    Raises:
        DecoderMissingError: the transfer syntax needs a plugin that is not installed.
        ValueError: the file is multi-frame and no frame was given, or the pixels are not one 2-D grayscale frame.
    """
    header = Dataset()
    # Enhanced multi-frame files keep the rescale in their functional groups (pydicom wants tags here, not keywords).
    groups = [Tag("SharedFunctionalGroupsSequence"), Tag("PerFrameFunctionalGroupsSequence")]
    tags = groups if frame is not None else None
    try:
        raw = pixel_array(path, index=frame, ds_out=header, specific_tags=tags)
    except RuntimeError as err:
        if "missing dependencies" not in str(err):
            raise
        try:
            check_decoders([read_file_meta_info(path).TransferSyntaxUID])
        except DecoderMissingError as missing:
            raise DecoderMissingError(f"{path}: {missing}") from None
        raise DecoderMissingError(f"{path}: {err}") from None
    if raw.ndim != 2:
        hint = " (multi-frame file: pass frame=)" if raw.ndim == 3 and frame is None else ""
        raise ValueError(f"{path}: expected one 2-D grayscale frame, got pixel array of shape {raw.shape}{hint}")
    return np.asarray(apply_modality_lut(raw, _rescale_source(header, frame)), dtype=np.float32)


def _rescale_source(header: Dataset, frame: int | None) -> Dataset:
    """The dataset holding the rescale for this frame: the file's own, or its enhanced functional group item."""
    if "RescaleSlope" in header or "ModalityLUTSequence" in header:
        return header
    source = Dataset()
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        value = _group_attr(header, frame, "PixelValueTransformationSequence", keyword)
        if value is not None:
            setattr(source, keyword, value)
    return source


def iter_series_slices(
    series: DicomSeries, window: tuple[float, float] | None = None, skipped: list[Skip] | None = None
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield the slices of a series in sorted order, one decoded slice in memory at a time.

    Args:
        series: a series from :func:`find_dicom_series`.
        window: (low, high) HU; if given, slices are windowed to [0, 1] instead of returned in HU.
        skipped: if given, (path, reason) of each slice that failed to decode is appended (it is also logged).

    Yields:
        (slice, info): float32 (H, W) array and a dict with ``source``, ``frame``, ``slice_index``, ``z``,
        ``instance_number``, ``sop_instance_uid``, ``series_instance_uid``, ``study_instance_uid``,
        ``series_description``, ``pixel_spacing``, ``kind`` ("dicom"), ``is_hu`` and ``window``.

    Raises:
        DecoderMissingError: before the first slice, if the series' encoding needs a plugin that is missing.
    """
    check_decoders([s.transfer_syntax_uid for s in series.slices])
    sink = skipped if skipped is not None else []
    for index, item in enumerate(series.slices):
        try:
            hu = read_dicom_hu(item.path, item.frame)
        except DecoderMissingError:
            raise
        except Exception as err:  # a damaged slice is one unusable item, not a failed series
            where = item.path if item.frame is None else Path(f"{item.path}#frame{item.frame}")
            _record_skip(sink, where, f"pixel data failed to decode ({type(err).__name__}: {err})")
            continue
        info = _dicom_info(series, item, index)
        yield _finish(hu, info, window)


def _dicom_info(series: DicomSeries, item: DicomSlice, index: int) -> dict:
    return {
        "kind": "dicom",
        "source": str(item.path),
        "frame": item.frame,
        "slice_index": index,
        "z": item.z,
        "instance_number": item.instance_number,
        "sop_instance_uid": item.sop_instance_uid,
        "series_instance_uid": series.series_instance_uid,
        "study_instance_uid": series.study_instance_uid,
        "series_description": series.series_description,
        "pixel_spacing": item.pixel_spacing,
    }


def _finish(array: np.ndarray, info: dict, window: tuple[float, float] | None) -> tuple[np.ndarray, dict]:
    """Window HU slices if asked and record what the values are."""
    if window is None:
        return array, {**info, "is_hu": True, "window": None}
    # Deferred import: transforms imports MONAI (slow to import) and this module; keep plain streaming light.
    from .transforms import window_hu

    low, high = float(window[0]), float(window[1])
    return window_hu(array, low, high), {**info, "is_hu": False, "window": (low, high)}


# --------------------------------------------------------------------------------------------------------------------
# NIfTI volumes


def iter_nifti_slices(
    path: str | os.PathLike, window: tuple[float, float] | None = None
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield the axial slices of a NIfTI CT volume (values taken as HU) one at a time.

    The volume is put in closest-canonical RAS order without loading it: the array axis nearest to the patient's
    superior axis is the slice axis, read one slice at a time through the nibabel array proxy (scl_slope/inter
    applied). Slices come inferior -> superior. Each slice is then laid out like a DICOM axial slice: rows run
    anterior -> posterior, columns from the patient's right to left (radiological display), i.e.
    ``ras[::-1, ::-1, k].T`` for a RAS-ordered volume ``ras``.

    Args:
        path: ``.nii`` or ``.nii.gz`` file (3-D, or 4-D with a single volume).
        window: (low, high) HU; if given, slices are windowed to [0, 1].

    Yields:
        (slice, info): float32 (H, W) and a dict with ``source``, ``kind`` ("nifti"), ``slice_index`` (k in RAS
        order), ``z`` (superior world coordinate of the slice centre in mm), ``pixel_spacing``
        ((row, column) mm), ``is_hu`` and ``window``.

    Note:
        ``.nii.gz`` is read forwards through one open gzip stream. A gzipped volume stored superior -> inferior
        would make gzip rewind for every slice, so it is read in blocks of ``NIFTI_GZIP_BACKWARD_BLOCK`` slices
        (about 32 MB at 512 x 512). A gzipped volume whose slice axis is not its last array axis is slow to stream.
    """
    import nibabel as nib  # imported here: only NIfTI users pay for it

    image = nib.load(str(path), keep_file_open=True)
    shape = _nifti_volume_shape(image.shape, path)
    ornt = nib.orientations.io_orientation(image.affine)
    canonical_affine = image.affine @ nib.orientations.inv_ornt_aff(ornt, shape)
    slice_axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    flipped = ornt[slice_axis, 1] < 0
    zooms = np.sqrt((canonical_affine[:3, :3] ** 2).sum(axis=0))
    n_x, n_y = (shape[int(np.flatnonzero(ornt[:, 0] == axis)[0])] for axis in (0, 1))  # R and A sizes
    count = shape[slice_axis]
    # Backwards through gzip means one rewind per read: read blocks of slices then, not single slices.
    block = NIFTI_GZIP_BACKWARD_BLOCK if flipped and str(path).lower().endswith(".gz") else 1
    for start in range(0, count, block):
        stop = min(count, start + block)
        stored = (count - stop, count - start) if flipped else (start, stop)
        ras = nib.orientations.apply_orientation(_nifti_slab(image, slice_axis, *stored), ornt)
        for k in range(start, stop):
            display = np.ascontiguousarray(ras[::-1, ::-1, k - start].T, dtype=np.float32)
            info = {
                "kind": "nifti",
                "source": str(path),
                "slice_index": k,
                "z": float((canonical_affine @ [(n_x - 1) / 2, (n_y - 1) / 2, k, 1.0])[2]),
                "pixel_spacing": (float(zooms[1]), float(zooms[0])),
            }
            yield _finish(display, info, window)


def _nifti_volume_shape(shape: tuple[int, ...], path) -> tuple[int, int, int]:
    if len(shape) == 3:
        return tuple(shape)
    if len(shape) > 3 and all(n == 1 for n in shape[3:]):
        return tuple(shape[:3])
    raise ValueError(f"{path}: expected a 3-D CT volume, got a NIfTI of shape {shape}")


def _nifti_slab(image, axis: int, start: int, stop: int) -> np.ndarray:
    """Stored slices [start, stop) through the proxy, kept 3-D so that apply_orientation can reorder them."""
    region = [slice(None)] * 3 + [0] * (len(image.shape) - 3)
    region[axis] = slice(start, stop)
    return np.asarray(image.dataobj[tuple(region)], dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Single 2-D image files (already in [0, 1])


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """Read a 2-D image file as float32 (H, W) in [0, 1].

    - TIFF (tifffile): float data is kept as is and must lie in [0, 1] within 1e-3 (LDCTIQAC slices); 8/16-bit
      unsigned integers are divided by 255/65535. Signed integers are refused: they are raw CT values, whose
      window is unknown (give such data as DICOM or NIfTI).
    - PNG/JPEG/BMP (Pillow): 8-bit / 16-bit gray divided by 255 / 65535; colour images become BT.601 luminance.

    Raises:
        ValueError: not a single 2-D image, or values outside the expected range.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _to_unit_gray(_read_tiff(path), path)
    if suffix in PIL_SUFFIXES:
        return _read_pil(path)
    raise ValueError(f"{path}: unsupported image type {suffix!r} (expected one of {', '.join(IMAGE_SUFFIXES)})")


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    array = tifffile.imread(path)
    while array.ndim > 2 and 1 in array.shape:  # (1, H, W) pages or (H, W, 1) samples; keep a 1-row image 2-D
        array = np.squeeze(array, axis=array.shape.index(1))
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return _luminance(array[..., :3], path)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a single 2-D slice, got a TIFF of shape {array.shape}")
    return array


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        mode = image.mode
        if mode.startswith("I;16") or mode == "I":  # 16-bit PNG (Pillow may widen it to 32-bit "I")
            return _to_unit_gray(np.asarray(image).astype(np.int64), path, max_value=65535)
        if mode == "F":
            return _to_unit_gray(np.asarray(image, dtype=np.float32), path)
        if mode in ("L", "LA", "1"):
            return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255)
        rgb = np.asarray(image.convert("RGB"))
    return _luminance(rgb, path)


def _luminance(rgb: np.ndarray, path: Path) -> np.ndarray:
    unit = _to_unit_gray(rgb, path)
    return np.tensordot(unit, LUMA_WEIGHTS, axes=([-1], [0])).astype(np.float32)


def _to_unit_gray(array: np.ndarray, path: Path, max_value: int | None = None) -> np.ndarray:
    """Scale integers by their bit depth, check floats are already in [0, 1]; return float32."""
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return _checked_unit_float(array.astype(np.float32), path)
    if max_value is None and array.dtype in (np.uint8, np.uint16):
        max_value = int(np.iinfo(array.dtype).max)
    if max_value is None:
        raise ValueError(
            f"{path}: {array.dtype} pixels have no fixed [0, 1] scaling (raw CT values?); "
            "give HU data as DICOM or NIfTI, or windowed data as float in [0, 1] or 8/16-bit unsigned"
        )
    if array.size and (int(array.min()) < 0 or int(array.max()) > max_value):
        raise ValueError(f"{path}: pixel values [{int(array.min())}, {int(array.max())}] fall outside [0, {max_value}]")
    return array.astype(np.float32) / np.float32(max_value)


def _checked_unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -UNIT_RANGE_TOLERANCE or high > 1 + UNIT_RANGE_TOLERANCE:
        raise ValueError(
            f"{path}: float values span [{low:.4g}, {high:.4g}]; expected an already-windowed slice in [0, 1] "
            f"(tolerance {UNIT_RANGE_TOLERANCE})"
        )
    return np.clip(array, 0.0, 1.0, out=array)


# --------------------------------------------------------------------------------------------------------------------
# One entry point for every CT input


def iter_ct_slices(
    path: str | os.PathLike, window: tuple[float, float] | None = None, skipped: list[Skip] | None = None
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(slice, info)`` for any supported CT input, one slice in memory at a time.

    Dispatch: a folder -> every CT DICOM series in it (recursively), series after series; ``.nii``/``.nii.gz`` ->
    :func:`iter_nifti_slices`; ``.tif``/``.tiff``/``.png``/``.jpg``/``.jpeg``/``.bmp`` -> one already-windowed
    slice (:func:`read_image_file`); any other file -> a single DICOM file (each frame if multi-frame).

    Args:
        path: folder, DICOM file, NIfTI file or 2-D image file.
        window: (low, high) HU to window HU sources to [0, 1]; None keeps HU. Image files are never re-windowed.
        skipped: if given, receives (path, reason) for every skipped file or slice (all are also logged).

    Yields:
        (slice, info): float32 (H, W); ``info["is_hu"]`` says whether the values are HU (True) or already in
        [0, 1] (False); ``info["kind"]`` is "dicom", "nifti" or "image"; see the per-source functions for the rest.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: nothing usable was found (the reasons are in the message).
        DecoderMissingError: DICOM pixel data needs a decoder plugin that is not installed.
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    name = source.name.lower()
    if source.is_file() and name.endswith(NIFTI_SUFFIXES):
        yield from iter_nifti_slices(source, window)
    elif source.is_file() and name.endswith(IMAGE_SUFFIXES):
        info = {"kind": "image", "source": str(source), "slice_index": 0, "is_hu": False, "window": None}
        yield read_image_file(source), info
    else:
        yield from _iter_dicom(source, window, skipped)


def _iter_dicom(source: Path, window: tuple[float, float] | None, skipped: list[Skip] | None):
    found = find_dicom_series(source)
    if skipped is not None:
        skipped.extend(found.skipped)
    if not found:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in found.skipped[:5])
        more = f" (+{len(found.skipped) - 5} more)" if len(found.skipped) > 5 else ""
        raise ValueError(f"{source}: no CT DICOM slices found. {reasons}{more}")
    for series in found:
        yield from iter_series_slices(series, window, skipped)
