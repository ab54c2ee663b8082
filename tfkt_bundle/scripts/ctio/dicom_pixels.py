"""DICOM pixels: decode one slice (or one frame) at a time to Hounsfield units, naming any missing decoder.

Series come from :func:`scripts.ctio.dicom.find_dicom_series`; nothing here holds more than one decoded slice.

Every transfer syntax decodes with BSD-licensed plugins. pydicom's GDCM plugin refuses 12-bit JPEG Extended,
although GDCM itself decodes it, so this module registers itself as one more pydicom decoder plugin for that syntax
(:func:`is_available`, ``DECODER_DEPENDENCIES`` and ``_decode_jpeg_12_bit`` are the plugin protocol). Without it
only the GPL-3.0 pylibjpeg-libjpeg would decode such files.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.pixels import apply_modality_lut, get_decoder, pixel_array
from pydicom.pixels.decoders import JPEGExtended12BitDecoder
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000TransferSyntaxes, JPEGExtended12Bit

from .dicom import DicomSeries, DicomSlice, Skip, group_attr, record_skip
from .kinds import file_kind

__all__ = [
    "DecoderMissingError",
    "check_decoders",
    "compressed_dicom",
    "decoding_plugin",
    "read_dicom_hu",
    "iter_series_slices",
]


logger = logging.getLogger(__name__)
JPEG_12_BIT_PLUGIN = "gdcm-12-bit"
# Plugins tried before pydicom's own order. pydicom tries GDCM first for JPEG 2000, and GDCM splits each slice's decode
# over every core; slices are already decoded beside the network (a DataLoader worker), so those threads only contend.
# pylibjpeg-openjpeg decodes the same OpenJPEG stream on one thread, in less core time per slice and with the same
# pixels (benchmarks/speed.py times both, alone and end to end).
PREFERRED_PLUGINS: dict[str, str] = dict.fromkeys(JPEG2000TransferSyntaxes, "pylibjpeg")
DECODER_DEPENDENCIES = {JPEGExtended12Bit: ("gdcm>=3.0.10",)}  # pip install python-gdcm
_NATIVE_STDERR = threading.Lock()


class DecoderMissingError(ImportError):
    """Raised when pixel data needs a decoder plugin that is not installed (an environment problem, not a data one).

    An ImportError, since a package is missing: command-line entry points report it in one line, not a traceback.
    """


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
    if "rle" in name:
        return "pylibjpeg-rle"
    return "python-gdcm"  # JPEG lossless, baseline and (8-bit) extended; BSD-licensed


def read_dicom_hu(path: str | os.PathLike, frame: int | None = None, transfer_syntax: str | None = None) -> np.ndarray:
    """Decode one DICOM slice (or one frame) to Hounsfield units as float32 (H, W).

    Only the requested frame is read from disk. RescaleSlope/Intercept (or a Modality LUT, or for enhanced
    multi-frame files the frame's Pixel Value Transformation) are applied with pydicom's ``apply_modality_lut``.

    Args:
        path: a DICOM file.
        frame: 0-based frame index for multi-frame files; None for a single-frame file.
        transfer_syntax: the file's TransferSyntaxUID when the caller has read it already (None: read here); it picks
            the decoder plugin (:data:`PREFERRED_PLUGINS`).

    Raises:
        DecoderMissingError: the transfer syntax needs a plugin that is not installed.
        ValueError: the file is multi-frame and no frame was given, or the pixels are not one 2-D grayscale frame.
    """
    header = Dataset()
    # Enhanced files (single-frame ones too) keep the rescale in their functional groups; pydicom reads these tags
    # besides group 0x0028 (it wants tags here, not keywords).
    groups = [Tag("SharedFunctionalGroupsSequence"), Tag("PerFrameFunctionalGroupsSequence")]
    try:
        raw = _pixels(path, frame, header, groups, decoding_plugin(transfer_syntax or _transfer_syntax(path)))
    except AttributeError:  # no pixel data found: pydicom's file-level reader does not inflate deflated files
        if read_file_meta_info(path).TransferSyntaxUID != DeflatedExplicitVRLittleEndian:
            raise
        raw, header = _deflated_frame(path, frame)
    except RuntimeError as err:
        _raise_decoder_error(path, err)
    if raw.ndim != 2:
        hint = " (multi-frame file: pass frame=)" if raw.ndim == 3 and frame is None else ""
        raise ValueError(f"{path}: expected one 2-D grayscale frame, got pixel array of shape {raw.shape}{hint}")
    return np.asarray(apply_modality_lut(raw, _rescale_source(header, frame)), dtype=np.float32)


def decoding_plugin(transfer_syntax: str | None) -> str:
    """The pydicom decoding plugin for ``transfer_syntax``: its :data:`PREFERRED_PLUGINS` entry where that plugin is
    installed, else "" (pydicom's own order)."""
    plugin = PREFERRED_PLUGINS.get(str(transfer_syntax), "")
    try:
        return plugin if plugin and plugin in get_decoder(transfer_syntax).available_plugins else ""
    except NotImplementedError:  # a syntax pydicom cannot decode at all: the decode itself says so
        return ""


def _pixels(path: str | os.PathLike, frame: int | None, header: Dataset, groups: list, plugin: str) -> np.ndarray:
    if plugin:
        try:
            return pixel_array(path, index=frame, ds_out=header, specific_tags=groups, decoding_plugin=plugin)
        except Exception:  # noqa: BLE001 - the preferred plugin is a speed choice: a file it refuses gets them all
            logger.debug("%s: %s plugin failed, trying pydicom's own order", path, plugin)
    return pixel_array(path, index=frame, ds_out=header, specific_tags=groups)


def compressed_dicom(inputs: Sequence[str | os.PathLike], tries: int = 20) -> bool | None:
    """Whether the inputs' DICOM pixels are compressed, from a sample: the first DICOM file of each input whose file
    meta names its transfer syntax (at most ``tries`` candidate files an input). True if any sampled file is
    compressed, False if every one is uncompressed, None where no input holds a DICOM file (NIfTI, images)."""
    found = [syntax for path in inputs if (syntax := _first_transfer_syntax(Path(path), tries)) is not None]
    return any(pydicom.uid.UID(syntax).is_compressed for syntax in found) if found else None


def _first_transfer_syntax(root: Path, tries: int) -> str | None:
    candidates = [root] if root.is_file() else (Path(d) / n for d, _, names in os.walk(root) for n in sorted(names))
    for path in (p for p in candidates if file_kind(p) == "dicom"):
        if (syntax := _transfer_syntax(path)) is not None:
            return syntax
        tries -= 1
        if tries <= 0:
            return None
    return None


def _transfer_syntax(path: str | os.PathLike) -> str | None:
    try:
        return read_file_meta_info(path).get("TransferSyntaxUID")
    except Exception:  # noqa: BLE001 - no readable file meta: pixel_array below reports what is wrong with the file
        return None


def _deflated_frame(path: str | os.PathLike, frame: int | None) -> tuple[np.ndarray, Dataset]:
    """Deflated files are inflated whole (they are rare and small), then the frame is taken."""
    dataset = pydicom.dcmread(path)
    raw = dataset.pixel_array
    return (raw if frame is None else raw[frame]), dataset


def _raise_decoder_error(path: str | os.PathLike, err: RuntimeError) -> None:
    """Turn pydicom's decoder failures into what to install, or re-raise (the slice is then skipped)."""
    if "missing dependencies" in str(err):
        try:
            check_decoders([read_file_meta_info(path).TransferSyntaxUID])
        except DecoderMissingError as missing:
            raise DecoderMissingError(f"{path}: {missing}") from None
        raise DecoderMissingError(f"{path}: {err}") from None
    # pydicom's other plugins refuse 12-bit JPEG Extended; with this module's GDCM one in place it is a damaged file.
    if "12-bit precision" in str(err) and JPEG_12_BIT_PLUGIN not in JPEGExtended12BitDecoder.available_plugins:
        raise DecoderMissingError(f"{path}: 12-bit JPEG Extended needs GDCM: pip install python-gdcm") from None
    raise err


def is_available(uid: str) -> bool:
    """pydicom plugin protocol: whether this module's GDCM decoder can decode ``uid`` here."""
    return uid == JPEGExtended12Bit and importlib.util.find_spec("gdcm") is not None


def _decode_jpeg_12_bit(src: bytes, runner: DecodeRunner) -> bytes:
    """pydicom plugin protocol: one 12-bit JPEG Extended frame decoded by GDCM, as pydicom's GDCM plugin does it."""
    import gdcm  # python-gdcm, BSD-licensed

    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    kind = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(JPEGExtended12Bit))))
    bits = runner.bits_stored
    image.SetPixelFormat(
        gdcm.PixelFormat(runner.samples_per_pixel, runner.bits_allocated, bits, bits - 1, runner.pixel_representation)
    )
    with _quiet_native_stderr():
        buffer = image.GetBuffer()
    # GDCM hands the buffer back as a str of the raw bytes.
    frame = buffer.encode("utf-8", "surrogateescape") if buffer else b""
    if len(frame) != runner.frame_length(unit="bytes"):
        raise ValueError(f"GDCM decoded {len(frame)} bytes, the frame holds {runner.frame_length(unit='bytes')}")
    return frame


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the C-level stderr: GDCM's libjpeg prints a line each time it hands a 12-bit stream from its 8-bit
    codec to its 12-bit one, i.e. on every slice."""
    with _NATIVE_STDERR:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _register_jpeg_12_bit_plugin() -> None:
    try:  # pydicom lists it as missing (DECODER_DEPENDENCIES) where GDCM is not installed
        JPEGExtended12BitDecoder.add_plugin(JPEG_12_BIT_PLUGIN, (__name__, "_decode_jpeg_12_bit"))
    except ValueError:  # registered already: the module was imported again
        pass


def _rescale_source(header: Dataset, frame: int | None) -> Dataset:
    """The dataset holding the rescale for this frame: the file's own, or its enhanced functional group item."""
    if "RescaleSlope" in header or "ModalityLUTSequence" in header:
        return header
    source = Dataset()
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        value = group_attr(header, frame, "PixelValueTransformationSequence", keyword)
        if value is not None:
            setattr(source, keyword, value)
    return source


def iter_series_slices(
    series: DicomSeries, skipped: list[Skip] | None = None, keep: Callable[[int], bool] | None = None
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield the slices of a series in sorted order, one decoded slice in memory at a time.

    Args:
        series: a series from :func:`find_dicom_series`.
        skipped: if given, (path, reason) of each slice that failed to decode is appended (it is also logged).
        keep: if given, only slices whose index in the sorted series it accepts are decoded and yielded (one
            share of the series for one of several parallel readers).

    Yields:
        (slice, info): float32 (H, W) array and a dict with ``source``, ``frame``, ``slice_index``,
        ``series_slices`` (slices the series holds after header checks), ``z``,
        ``instance_number``, ``sop_instance_uid``, ``series_instance_uid``, ``study_instance_uid``,
        ``series_description``, ``pixel_spacing``, ``kind`` ("dicom"), ``is_hu`` (True: values are HU) and the
        :data:`ACQUISITION_FIELDS` the slice's header holds.

    Raises:
        DecoderMissingError: before the first slice, if the series' encoding needs a plugin that is missing.
    """
    check_decoders([s.transfer_syntax_uid for s in series.slices])
    sink = skipped if skipped is not None else []
    for index, item in enumerate(series.slices):
        if keep is not None and not keep(index):
            continue
        try:
            hu = read_dicom_hu(item.path, item.frame, item.transfer_syntax_uid)
        except DecoderMissingError:
            raise
        except Exception as err:  # a damaged slice is one unusable item, not a failed series
            where = item.path if item.frame is None else Path(f"{item.path}#frame{item.frame}")
            record_skip(sink, where, f"pixel data failed to decode ({type(err).__name__}: {err})")
            continue
        yield hu, _dicom_info(series, item, index)


def _dicom_info(series: DicomSeries, item: DicomSlice, index: int) -> dict:
    return {
        "kind": "dicom",
        "source": str(item.path),
        "frame": item.frame,
        "slice_index": index,
        "series_slices": len(series.slices),
        "z": item.z,
        "instance_number": item.instance_number,
        "sop_instance_uid": item.sop_instance_uid,
        "series_instance_uid": series.series_instance_uid,
        "study_instance_uid": series.study_instance_uid,
        "series_description": series.series_description,
        "pixel_spacing": item.pixel_spacing,
        "is_hu": True,
        **dict(item.acquisition),
    }


_register_jpeg_12_bit_plugin()
