"""NIfTI CT volumes (values taken as HU), streamed one axial slice at a time in the DICOM display layout."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["iter_nifti_slices", "NIFTI_GZIP_BACKWARD_BLOCK"]

NIFTI_GZIP_BACKWARD_BLOCK = 32


def iter_nifti_slices(
    path: str | os.PathLike, keep: Callable[[int], bool] | None = None
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield the axial slices of a NIfTI CT volume (values taken as HU) one at a time.

    The volume is put in closest-canonical RAS order without loading it: the array axis nearest to the patient's
    superior axis is the slice axis, read one slice at a time through the nibabel array proxy (scl_slope/inter
    applied). Slices come inferior -> superior. Each slice is then laid out like a DICOM axial slice: rows run
    anterior -> posterior, columns from the patient's right to left (radiological display), i.e.
    ``ras[::-1, ::-1, k].T`` for a RAS-ordered volume ``ras``.

    Args:
        path: ``.nii`` or ``.nii.gz`` file (3-D, or 4-D with a single volume).
        keep: if given, only slices whose index k it accepts are read and yielded (one share of the volume for one
            of several parallel readers).

    Yields:
        (slice, info): float32 (H, W) and a dict with ``source``, ``kind`` ("nifti"), ``slice_index`` (k in RAS
        order), ``series_slices`` (slices in the volume), ``z`` (superior world coordinate of the slice centre in
        mm), ``pixel_spacing`` ((row, column) mm) and ``is_hu`` (True).

    Note:
        ``.nii.gz`` is read forwards through one open gzip stream. A gzipped volume stored superior -> inferior
        would make gzip rewind for every slice, so it is read in blocks of ``NIFTI_GZIP_BACKWARD_BLOCK`` slices
        (about 32 MB at 512 x 512). A gzipped volume whose slice axis is not its last array axis is slow to stream.
    """
    import nibabel as nib  # imported here: only NIfTI users pay for it

    try:
        image = nib.load(str(path), keep_file_open=True)
    except nib.filebasedimages.ImageFileError as err:  # a plain Exception in nibabel: the input's fault, one line
        raise ValueError(f"{path}: not a readable NIfTI volume ({err})") from None
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
        if keep is not None and not any(keep(k) for k in range(start, stop)):
            continue  # not this reader's share: not even read
        stored = (count - stop, count - start) if flipped else (start, stop)
        ras = nib.orientations.apply_orientation(_nifti_slab(image, slice_axis, *stored), ornt)
        for k in range(start, stop):
            if keep is not None and not keep(k):
                continue
            display = np.ascontiguousarray(ras[::-1, ::-1, k - start].T, dtype=np.float32)
            info = {
                "kind": "nifti",
                "source": str(path),
                "slice_index": k,
                "series_slices": count,
                "z": float((canonical_affine @ [(n_x - 1) / 2, (n_y - 1) / 2, k, 1.0])[2]),
                "pixel_spacing": (float(zooms[1]), float(zooms[0])),
                "is_hu": True,
            }
            yield display, info


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
