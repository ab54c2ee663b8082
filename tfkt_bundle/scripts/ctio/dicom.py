"""DICOM CT series: find, group and sort them from headers, then decode one slice at a time to Hounsfield units.

Nothing here loads a whole series: a 1,000-slice series is read header by header, then decoded slice by slice.
Every file, folder or slice that cannot be used is skipped on its own, with its reason logged and listed, never
silently: files that are not DICOM, not a CT image (SR, RT structures, secondary captures, PDF...), cut short on
disk, without pixel data or without RescaleSlope/RescaleIntercept (their stored values are not HU), unreadable files
and sub-folders, and the slices of a series whose matrix size differs from that of most of its slices (a series is
one volume; such slices are another reconstruction or a stray image).

- A slice is a float32 (H, W) array in HU, returned as stored: for the usual axial ImageOrientationPatient
  (1, 0, 0, 0, 1, 0) rows run anterior -> posterior and columns from the patient's right to left (radiological
  display), the layout :mod:`scripts.ctio.nifti` gives NIfTI slices too.
- Slice order and ``info["z"]``: slices are sorted by their position along the slice normal (row direction x column
  direction, dotted with ImagePositionPatient). For the usual axial orientation this is the patient's superior
  coordinate in mm, so the order runs inferior -> superior.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from scripts.utils.numbers import finite_float

from .kinds import natural_key

__all__ = [
    "ACQUISITION_FIELDS",
    "DicomSlice",
    "DicomSeries",
    "DicomSeriesList",
    "Skip",
    "find_dicom_series",
    "record_skip",
    "group_attr",
    "unreadable_reason",
]

LOGGER = logging.getLogger(__name__)

CT_SOP_CLASS_UIDS = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
# Pixel Data, Float Pixel Data, Double Float Pixel Data: where pydicom stops a header-only read.
PIXEL_DATA_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
UNDEFINED_LENGTH = 0xFFFFFFFF
# Two slices closer than this along the normal are reported as sharing a position (DICOM DS has ~1e-5 mm precision).
POSITION_TOLERANCE_MM = 1e-3

Skip = tuple[Path, str]

# What a physicist plans doses with, per slice: output key -> (DICOM keyword, enhanced CT functional group holding it).
# Exposure and CTDIvol vary slice by slice under tube-current modulation; a series reports their mean.
ACQUISITION_FIELDS = {
    "study_date": ("StudyDate", None),
    "series_number": ("SeriesNumber", None),
    "manufacturer": ("Manufacturer", None),
    "model": ("ManufacturerModelName", None),
    "kvp": ("KVP", "CTXRayDetailsSequence"),
    "exposure_mas": ("Exposure", "CTExposureSequence"),
    "ctdi_vol": ("CTDIvol", "CTExposureSequence"),
    "convolution_kernel": ("ConvolutionKernel", "CTReconstructionSequence"),
    "slice_thickness": ("SliceThickness", "PixelMeasuresSequence"),
}
NUMERIC_ACQUISITION_FIELDS = ("kvp", "exposure_mas", "ctdi_vol", "slice_thickness")


class _SkipItemError(Exception):
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
        acquisition: (key, value) for the :data:`ACQUISITION_FIELDS` present: float for the numeric ones, else str.
        shape: (Rows, Columns).
    """

    path: Path
    sop_instance_uid: str
    instance_number: int | None
    z: float | None
    frame: int | None
    transfer_syntax_uid: str
    pixel_spacing: tuple[float, float] | None = None
    orientation: tuple[float, ...] | None = None
    acquisition: tuple[tuple[str, float | str], ...] = ()
    shape: tuple[int, int] | None = None


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


def find_dicom_series(folder: str | os.PathLike, recursive: bool = True, log: bool = True) -> DicomSeriesList:
    """Find the CT series in a folder (or one file) from headers only, slices sorted along the slice normal.

    Files that are not DICOM, not CT images, cut short, without pixel data or not in Hounsfield units, slices of
    another matrix size than the rest of their series, and sub-folders or files that cannot be read are skipped one
    by one, each with its reason logged and listed in ``result.skipped`` (module docstring). Pixel data is not read.

    Args:
        folder: a folder of DICOM files, or a single DICOM file.
        recursive: also search sub-folders.
        log: log each skipped file (False: only list them, e.g. in all but one of several parallel readers).

    Returns:
        A list of :class:`DicomSeries` (ordered by series description and UID) with a ``skipped`` attribute.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        OSError: ``folder`` cannot be listed (e.g. PermissionError); unreadable files and sub-folders in it are
            skipped instead.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    groups: dict[str, DicomSeries] = {}
    skipped: list[Skip] = []
    for path in _candidate_files(root, recursive, skipped, log):
        try:
            header, pixel_problem = _read_header(path)
            _check_ct_image(header)
            if pixel_problem:
                raise _SkipItemError(pixel_problem)
            _check_rescale(header)
            slices = _slices_of(header, path)
            key, note = _series_key(header, path)
            if key not in groups:
                groups[key] = _new_series(header, note, log)
            groups[key].slices.extend(slices)
        except _SkipItemError as reason:
            record_skip(skipped, path, str(reason), log)
        except Exception as err:  # a header pydicom parsed but whose values do not convert: one unusable file
            record_skip(skipped, path, f"unusable DICOM header ({type(err).__name__}: {err})", log)
    for series in groups.values():
        _drop_duplicates(series, skipped, log)
        _drop_other_sizes(series, skipped, log)
        _sort_series(series, log)
    ordered = sorted(groups.values(), key=lambda s: (s.series_description, s.series_instance_uid))
    return DicomSeriesList(ordered, skipped)


def _candidate_files(root: Path, recursive: bool, skipped: list[Skip], log: bool) -> list[Path]:
    """The files under ``root`` in natural order; what cannot be searched or read as a file is skipped with why.

    os.walk, not Path.glob: glob passes over a sub-folder it may not list without a word.
    """
    if root.is_file():
        return [root]
    errors: list[OSError] = []
    files, others = [], []
    for folder, dirs, names in os.walk(root, onerror=errors.append):
        here = Path(folder)
        if not recursive:
            dirs.clear()
        for name in dirs:  # os.walk does not follow links to folders (nor did the glob it replaces)
            if os.path.islink(here / name):
                others.append((here / name, "link to a folder: not followed (give its target as an input)"))
        for name in names:
            path = here / name
            problem = _not_a_file(path)
            if problem:
                others.append((path, problem))
            else:
                files.append(path)
    for err in errors:
        if Path(err.filename or root) == root:  # the input itself: its caller skips it, or stops the job
            raise err
        others.append((Path(err.filename), f"folder not searched: {unreadable_reason(err)}"))
    for path, reason in sorted(others, key=lambda item: natural_key(item[0])):
        record_skip(skipped, path, reason, log)
    return sorted(files, key=natural_key)


def _not_a_file(path: Path) -> str | None:
    """Why a listed name is no file to read (None: it is one)."""
    try:
        if stat.S_ISREG(os.stat(path).st_mode):
            return None
    except OSError as err:  # e.g. in a folder that may be listed but not searched
        return "broken link" if isinstance(err, FileNotFoundError) and os.path.islink(path) else unreadable_reason(err)
    return "not a regular file"


def record_skip(skipped: list[Skip], path: Path, reason: str, log: bool = True) -> None:
    if log:
        LOGGER.warning("skipped %s: %s", path, reason)
    skipped.append((path, reason))


def unreadable_reason(err: OSError) -> str:
    """The skip reason of a file or folder the system would not read, without repeating its path."""
    return f"unreadable ({type(err).__name__}: {err.strerror or err})"


def _read_header(path: Path) -> tuple[Dataset, str | None]:
    """The header (no pixel data), and why its pixel data cannot be used (None: it can, as far as headers tell).

    A file cut short in its header is skipped here: pydicom reads a cut file without complaint, as if it ended
    there. Pixel data is judged after the image checks, since objects that are not images have none.
    """
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise _SkipItemError(unreadable_reason(err)) from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        header = _parse_header(handle)
        return header, _pixel_problem(handle, header, size)


def _parse_header(handle) -> Dataset:
    try:
        return pydicom.dcmread(handle, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    except OSError as err:
        raise _SkipItemError(unreadable_reason(err)) from None
    except Exception as err:  # pydicom raises many types on damaged files; each is one unusable file
        raise _SkipItemError(f"unreadable DICOM ({type(err).__name__}: {err})") from None
    handle.seek(0)
    start = handle.read(4)
    if len(start) < 4 or start[:2] not in (b"\x08\x00", b"\x02\x00"):
        raise _SkipItemError("not DICOM (no 'DICM' file marker)")
    handle.seek(0)
    try:  # files without the 128-byte preamble (old exports) start directly with a group 0002/0008 element
        return pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    except Exception as err:
        raise _SkipItemError(f"not DICOM ({type(err).__name__}: {err})") from None


def _pixel_problem(handle, header: Dataset, size: int) -> str | None:
    """Where pydicom stopped reading tells what the file holds: pixel data next, or the end of the file.

    Raises _SkipItemError if the file ends inside its header; returns why the pixel data cannot be used, if so.
    """
    syntax = pydicom.uid.UID(str(getattr(header, "file_meta", Dataset()).get("TransferSyntaxUID", "") or ""))
    if syntax.is_transfer_syntax and syntax.is_deflated:  # read from an inflated copy: positions are not the file's
        return None
    stop = handle.tell()
    if stop >= size:
        _check_header_complete(header, syntax, size)
        return "no pixel data: the file ends after its header"
    if not syntax.is_transfer_syntax:  # no encoding to parse the next element by: left to the decoder
        return None
    element = handle.read(12)
    order = "<" if syntax.is_little_endian else ">"
    if len(element) < 8 or struct.unpack(f"{order}HH", element[:4]) not in PIXEL_DATA_TAGS:
        raise _SkipItemError(f"damaged header: reading stopped at byte {stop} of {size}, before any pixel data")
    start = stop + (8 if syntax.is_implicit_VR else 12)  # explicit VR: OB/OW/OF/OD take a 4-byte length
    if start > size:
        raise _SkipItemError(f"file cut short: it ends inside its pixel data element's header, at byte {size}")
    length = struct.unpack(f"{order}L", element[start - stop - 4 : start - stop])[0]
    if length != UNDEFINED_LENGTH and start + length > size:  # compressed (undefined length): left to the decoder
        return f"file cut short: its pixel data holds {max(size - start, 0)} of {length} bytes"
    return None


def _check_header_complete(header: Dataset, syntax: str, size: int) -> None:
    """Raise _SkipItemError if a file read to its end stops inside its header (pydicom reads such files silently)."""
    where = f"at byte {size}"
    if getattr(header, "preamble", None) is not None and not syntax:  # the file meta header always ends with it
        raise _SkipItemError(f"file cut short: it ends inside its file meta header, {where}")
    if not len(header):
        raise _SkipItemError(f"file cut short: nothing follows its file meta header, {where}")
    if _header_end(header) not in (None, size):
        raise _SkipItemError(f"file cut short: it ends inside its header, {where}")


def _header_end(header: Dataset) -> int | None:
    """Where the last element read ends in the file; None when pydicom no longer says (a value read already)."""
    for dataset in (header, getattr(header, "file_meta", Dataset())):
        tags = list(dataset.keys())
        if tags:
            last = dataset.get_item(max(tags))
            if not isinstance(last, RawDataElement) or last.length == UNDEFINED_LENGTH:
                return None
            return last.value_tell + last.length
    return None


def _sop_class_uid(header: Dataset) -> str:
    uid = str(header.get("SOPClassUID", "") or "")
    return uid or str(getattr(header, "file_meta", Dataset()).get("MediaStorageSOPClassUID", "") or "")


def _sop_class_name(uid: str) -> str:
    return pydicom.uid.UID(uid).name if uid else "unknown"


def _check_ct_image(header: Dataset) -> None:
    """Raise _SkipItemError unless the header describes a grayscale CT image in Hounsfield units."""
    sop_class = _sop_class_uid(header)
    if "Rows" not in header or "Columns" not in header:
        if sop_class in CT_SOP_CLASS_UIDS:  # a CT image object must have them
            raise _SkipItemError(f"damaged {CT_SOP_CLASS_UIDS[sop_class]} header: no Rows/Columns")
        raise _SkipItemError(f"not an image (no pixel matrix; SOP class {_sop_class_name(sop_class)})")
    modality = str(header.get("Modality", "") or "")
    if modality != "CT":
        raise _SkipItemError(f"not CT (Modality {modality!r})")
    if sop_class and sop_class not in CT_SOP_CLASS_UIDS:
        raise _SkipItemError(f"not a CT image object (SOP class {_sop_class_name(sop_class)})")
    if int(header.get("SamplesPerPixel", 1) or 1) != 1:
        raise _SkipItemError(f"not grayscale (SamplesPerPixel {header.SamplesPerPixel})")
    if "LOCALIZER" in [str(v).upper() for v in _multi(header.get("ImageType"))]:
        raise _SkipItemError("localizer (scout) image, not an axial slice")
    rescale_type = str(group_attr(header, None, "PixelValueTransformationSequence", "RescaleType") or "HU")
    if rescale_type.upper() != "HU":
        raise _SkipItemError(f"values are not HU (RescaleType {rescale_type!r})")


def _check_rescale(header: Dataset) -> None:
    """Raise _SkipItemError if some frame lacks (or holds no number in) RescaleSlope or RescaleIntercept.

    Type 1 in CT images, looked for where the decoder looks: without them pydicom returns the stored values
    unchanged, which for unsigned data are ~1024 HU off. A Modality LUT Sequence maps stored values to HU as well.
    """
    if "ModalityLUTSequence" in header:
        return
    missing = [
        keyword
        for keyword in ("RescaleSlope", "RescaleIntercept")
        if any(
            finite_float(group_attr(header, frame, "PixelValueTransformationSequence", keyword)) is None
            for frame in _frames(header)
        )
    ]
    if missing:
        raise _SkipItemError(f"no {'/'.join(missing)}: stored values are not Hounsfield units")


def _frames(header: Dataset) -> list[int | None]:
    """The frame indices of a file as the decoder takes them: None for a single-frame file."""
    n_frames = int(header.get("NumberOfFrames", 1) or 1)
    return [None] if n_frames == 1 else list(range(n_frames))


def _multi(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def group_attr(header: Dataset, frame: int | None, sequence: str, keyword: str):
    """Read ``keyword`` from the dataset, else from an enhanced multi-frame functional group (per-frame first).

    ``frame`` None is a single-frame file: an enhanced one keeps its only frame's groups at index 0.
    """
    if keyword in header:
        return header.get(keyword)
    items = []
    if "PerFrameFunctionalGroupsSequence" in header and (frame is not None or header.get("NumberOfFrames") == 1):
        items.append(header.PerFrameFunctionalGroupsSequence[frame or 0])
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


def _new_series(header: Dataset, note: str | None, log: bool) -> DicomSeries:
    series = DicomSeries(
        series_instance_uid=str(header.get("SeriesInstanceUID", "") or ""),
        study_instance_uid=str(header.get("StudyInstanceUID", "") or ""),
        series_description=str(header.get("SeriesDescription", "") or ""),
    )
    if note:
        if log:
            LOGGER.warning("%s (%s)", note, series.series_description or "no description")
        series.notes.append(note)
    return series


def _slices_of(header: Dataset, path: Path) -> list[DicomSlice]:
    sop_uid = str(header.get("SOPInstanceUID", "") or "")
    sop_uid = sop_uid or str(header.file_meta.get("MediaStorageSOPInstanceUID", "") or "")
    syntax = str(header.file_meta.get("TransferSyntaxUID", "") or "")
    if not syntax:
        raise _SkipItemError("no TransferSyntaxUID in the file meta header: pixel encoding unknown")
    return [
        DicomSlice(
            path=path,
            sop_instance_uid=sop_uid,
            instance_number=_as_int(header.get("InstanceNumber")),
            z=_slice_z(header, frame),
            frame=frame,
            transfer_syntax_uid=syntax,
            pixel_spacing=_floats(group_attr(header, frame, "PixelMeasuresSequence", "PixelSpacing"), 2),
            orientation=_floats(group_attr(header, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            acquisition=_acquisition(header, frame),
            shape=(int(header.Rows), int(header.Columns)),
        )
        for frame in _frames(header)
    ]


def _acquisition(header: Dataset, frame: int | None) -> tuple[tuple[str, float | str], ...]:
    """The :data:`ACQUISITION_FIELDS` present in a header; ExposureInmAs stands in for Exposure in enhanced CT."""
    found = []
    for key, (keyword, group) in ACQUISITION_FIELDS.items():
        value = group_attr(header, frame, group, keyword) if group else header.get(keyword)
        if value is None and key == "exposure_mas":
            value = group_attr(header, frame, "CTExposureSequence", "ExposureInmAs")
        if value is None or value == "":
            continue
        if key in NUMERIC_ACQUISITION_FIELDS:
            number = finite_float(value)
            if number is not None:
                found.append((key, number))
        else:
            found.append((key, "\\".join(str(v) for v in _multi(value))))
    return tuple(found)


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
    orientation = _floats(group_attr(header, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    position = _floats(group_attr(header, frame, "PlanePositionSequence", "ImagePositionPatient"), 3)
    if orientation is None or position is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(normal, position))


def _drop_duplicates(series: DicomSeries, skipped: list[Skip], log: bool) -> None:
    """Keep the first copy of each instance (and frame): exports often hold the same SOP instance twice."""
    first: dict[tuple[str, int | None], Path] = {}
    kept = []
    for item in series.slices:
        key = (item.sop_instance_uid, item.frame)
        if item.sop_instance_uid and key in first:
            if item.path != first[key]:  # a multi-frame file lists each frame once; report each extra file once
                reason = f"duplicate instance: same SOPInstanceUID as {first[key]}"
                if item.frame in (None, 0):
                    record_skip(skipped, item.path, reason, log)
            continue
        first[key] = item.path
        kept.append(item)
    series.slices = kept


def _drop_other_sizes(series: DicomSeries, skipped: list[Skip], log: bool) -> None:
    """Keep the slices of the series' commonest matrix size (on a tie, the larger); skip the others with why.

    A series is one reconstruction, scored and summarised as one volume: a slice of another size is not part of
    it (another reconstruction sharing the UID, or a stray image).
    """
    sizes = Counter(item.shape for item in series.slices)
    if len(sizes) < 2:
        return
    kept = max(sizes, key=lambda shape: (sizes[shape], shape[0] * shape[1], shape))
    counts = ", ".join(f"{_size_text(shape)} ({n})" for shape, n in sizes.most_common())
    note = f"slices of {len(sizes)} matrix sizes, {counts}: only the {_size_text(kept)} slices are kept"
    reason = (
        f"matrix size differs from the rest of its series: {{size}}, where {sizes[kept]} of "
        f"{len(series.slices)} slices are {_size_text(kept)}"
    )
    for item in series.slices:
        if item.shape != kept and item.frame in (None, 0):  # one entry per file
            record_skip(skipped, item.path, reason.format(size=_size_text(item.shape)), log)
    series.slices = [item for item in series.slices if item.shape == kept]
    if log:
        LOGGER.warning("series %s: %s", series.series_description or series.series_instance_uid, note)
    series.notes.append(note)


def _size_text(shape: tuple[int, int] | None) -> str:
    return "unknown" if shape is None else f"{shape[0]}x{shape[1]}"


def _sort_series(series: DicomSeries, log: bool = True) -> None:
    slices = series.slices
    reason = _position_problem(slices)
    if reason is None:
        series.slices = sorted(slices, key=lambda s: (s.z, _instance_or_inf(s), s.frame or 0))
        series.sorted_by = "position"
        _note_shared_positions(series, log)
        return
    if all(s.instance_number is not None for s in slices):
        series.slices = sorted(slices, key=lambda s: (s.instance_number, s.frame or 0, natural_key(s.path)))
        series.sorted_by = "instance_number"
        note = f"sorted by InstanceNumber: {reason}"
    else:
        series.slices = sorted(slices, key=lambda s: (natural_key(s.path), s.frame or 0))
        series.sorted_by = "file_name"
        note = f"sorted by file name: {reason} and InstanceNumber is missing"
    if log:
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


def _note_shared_positions(series: DicomSeries, log: bool) -> None:
    z = np.array([s.z for s in series.slices])
    shared = int(np.sum(np.diff(z) < POSITION_TOLERANCE_MM)) if len(z) > 1 else 0
    if shared:
        note = f"{shared} slices share a position with their neighbour (several acquisitions in one series?)"
        if log:
            LOGGER.warning("series %s: %s", series.series_description or series.series_instance_uid, note)
        series.notes.append(note)
