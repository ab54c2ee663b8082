"""Fast parallel-beam projector with the geometry of scikit-image's ``radon`` / ``iradon``, as sparse matrices.

``radon`` rotates the image about pixel ``(N//2, N//2)`` with bilinear interpolation and sums the rows; ``iradon``
ramp-filters each view by FFT and back-projects with linear interpolation along the detector (bin ``M//2`` on the
axis), then scales by ``pi / (2 n_views)``. Both are linear maps, so each is built once per geometry as a sparse
matrix with exactly those interpolation weights and applied with a sparse-dense product (torch CSR).

The square pixel grid is symmetric under 90-degree rotations and flips. Each symmetry maps the view at angle
``theta`` onto another view of the same scan (``90 - theta``, ``theta + 90``, ``180 - theta`` when the view count is
even), so the matrices hold only a quarter of the views and the other views come from the same matrix applied to
the rotated or flipped image (projection) or sinogram (back-projection); the 180-degree turn halves them again
(half the detector bins, half the pixels). One product with 8 right-hand columns, which costs little more than
one, does the whole scan. The result equals scikit-image's up to float32 rounding,
except where the outermost ring of pixels of the projected disc (or the corners of a padded square) is not zero:
there the symmetric sampling takes one more or one fewer sample than ``radon``.

Memory, float32 values and int32 indices, 512x512 and 808 views: projection 0.7 GB (inscribed circle) or 1.4 GB
(padded square), back-projection 0.35 / 0.45 GB; the most recent geometries are kept (:func:`clear_cache` frees
them).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["radon_fast", "iradon_fast", "clear_cache", "ramp_filter"]

# The 8 symmetries of the square grid, acting on (x, y) = (column, row) offsets from the rotation centre.
_D4 = np.array(
    [
        [[1, 0], [0, 1]],
        [[0, -1], [1, 0]],
        [[-1, 0], [0, -1]],
        [[0, 1], [-1, 0]],
        [[1, 0], [0, -1]],
        [[-1, 0], [0, 1]],
        [[0, 1], [1, 0]],
        [[0, -1], [-1, 0]],
    ]
)
_forked = False  # set in a child process made by fork


def _mark_forked() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_mark_forked)


def _torch():
    """torch, on one thread in a forked child: OpenMP's thread pool does not survive fork, and a forked worker
    (e.g. of a ProcessPoolExecutor) whose parent already used it would hang in the first parallel product."""
    global _forked
    import torch

    if _forked:
        torch.set_num_threads(1)
        _forked = False
    return torch


_CHUNK = 16  # views per block while building the projection matrix, to bound the temporary memory
_BLOCK = 1 << 22  # entries per block while building the back-projection matrix


@dataclass(frozen=True)
class _Symmetry:
    """How the views of a scan reduce to a fundamental subset under grid symmetries.

    Attributes:
        matrices: (G, 2, 2) grid symmetries used, one per right-hand column.
        fundamental: view indices the matrices hold.
        source: for each view k, (a, g, s): fundamental view ``a``, symmetry ``g``, detector sign ``s``, such that
            view k of the image equals view ``fundamental[a]`` of the image transformed by ``g``, with bins reversed
            when ``s`` is -1.
    """

    matrices: np.ndarray
    fundamental: np.ndarray
    source: np.ndarray


def _angles(n_views: int) -> np.ndarray:
    return np.deg2rad(np.linspace(0.0, 180.0, n_views, endpoint=False))


@lru_cache(maxsize=16)
def _symmetry(n_views: int) -> _Symmetry:
    theta = _angles(n_views)
    detector = np.stack([np.cos(theta), -np.sin(theta)], axis=1)  # direction of increasing bin index
    maps, matrices = [], []
    for matrix in _D4:
        moved = detector @ matrix.T
        # The moved detector direction is that of view k' (sign +1) or of view k' reversed (sign -1).
        turns = (np.rad2deg(np.arctan2(-moved[:, 1], moved[:, 0])) % 360.0) * n_views / 180.0
        index = np.rint(turns)
        if np.abs(turns - index).max() > 1e-6:
            continue  # this symmetry maps the views between the scan's angles
        index = index.astype(np.int64) % (2 * n_views)
        target, sign = index % n_views, np.where(index >= n_views, -1, 1)
        if any(np.array_equal(target, seen) for seen in maps):
            continue  # same view map as a symmetry already kept (its negative)
        maps.append(target)
        matrices.append((matrix, sign))
    targets = np.stack(maps)  # (G, n_views)
    fundamental = np.array([k for k in range(n_views) if k == targets[:, k].min()])
    source = np.full((n_views, 3), -1, dtype=np.int64)
    for a, k in enumerate(fundamental):
        for g, (_, sign) in enumerate(matrices):
            if source[targets[g, k], 0] < 0:
                source[targets[g, k]] = (a, g, sign[k])
    if (source[:, 0] < 0).any():
        raise RuntimeError(f"view symmetry reduction left views uncovered for n_views={n_views}")
    return _Symmetry(np.stack([m for m, _ in matrices]), fundamental, source)


def _csr(crow: np.ndarray, col, val, shape: tuple[int, int]):
    """A torch CSR matrix with int32 indices (half the memory of int64; the products accept them)."""
    torch = _torch()

    if crow[-1] >= 2**31:
        raise ValueError(f"geometry too large for int32 sparse indices ({crow[-1]} entries)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # The builders keep every index in range, so the (costly) invariant checks are off on purpose.
        crow = torch.from_numpy(crow.astype(np.int32))
        return torch.sparse_csr_tensor(crow, col, val, size=shape, check_invariants=False)


def _disc(radius: float, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets (a, b) in [-half, half]^2 with a^2 + b^2 <= radius^2, ordered by a then b."""
    a, b = np.mgrid[-half : half + 1, -half : half + 1]
    keep = a**2 + b**2 <= radius**2
    return a[keep], b[keep]


@dataclass(frozen=True)
class _Forward:
    matrix: object  # torch CSR, rows (fundamental view, bin u in [-half_u, half_u]), columns pixels of the grid
    half_grid: int  # the image grid is (2 h + 1)^2, centred on the rotation centre
    half_u: int
    symmetry: _Symmetry


@lru_cache(maxsize=2)
def _forward(support: float, n_views: int) -> _Forward:
    """Projection matrix for an image that is zero beyond ``support`` pixels from the centre."""
    torch = _torch()

    reach = support + 1.5  # a bilinear sample reads pixels within sqrt(2) of it
    half_u = math.ceil(reach)
    half = half_u + 1
    side = 2 * half + 1
    sym = _symmetry(n_views)
    u, w = _disc(reach, half_u)  # (bin, position along the ray) of every sample that can read a non-zero pixel
    # Bins u >= 0 only: bin -u of the image is bin u of the image turned by 180 degrees (one more column).
    u, w = u[u >= 0], w[u >= 0]
    per_row = np.bincount(u, minlength=half_u + 1) * 4
    theta = _angles(n_views)[sym.fundamental]
    u, w = torch.from_numpy(u.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
    cols = torch.empty((len(theta), len(u), 4), dtype=torch.int32)
    vals = torch.empty((len(theta), len(u), 4), dtype=torch.float32)
    for start in range(0, len(theta), _CHUNK):
        block = torch.from_numpy(theta[start : start + _CHUNK, None])
        cos, sin = torch.cos(block).float(), torch.sin(block).float()
        # radon's inverse map: output (row w, column u) samples the input at x = cos u + sin w, y = -sin u + cos w.
        x, y = cos * u + sin * w, cos * w - sin * u
        fx, fy = torch.floor(x), torch.floor(y)
        ax, ay = x - fx, y - fy
        base = ((fy + half) * side + fx + half).to(torch.int32)
        part = slice(start, start + _CHUNK)
        torch.stack([base, base + 1, base + side, base + side + 1], dim=-1, out=cols[part])
        torch.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay], dim=-1, out=vals[part])
    crow = np.concatenate([[0], np.cumsum(np.tile(per_row, len(theta)))])
    matrix = _csr(crow, cols.view(-1), vals.view(-1), (len(theta) * len(per_row), side * side))
    return _Forward(matrix, half, half_u, sym)


def _transformed(images: np.ndarray, matrices: np.ndarray, half: int) -> np.ndarray:
    """Columns ``f(M_g p)`` for every grid offset p of a (2 half + 1)^2 image: shape (pixels, G)."""
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    points = np.stack([x.ravel(), y.ravel()])  # (2, pixels)
    out = np.empty((points.shape[1], len(matrices)), dtype=np.float32)
    for g, matrix in enumerate(matrices):
        mx, my = matrix @ points
        out[:, g] = images[my + half, mx + half]
    return out


def radon_fast(image: np.ndarray, n_views: int, circle: bool = True) -> np.ndarray:
    """``skimage.transform.radon(image, projection angles, circle)`` for a square image, via a cached matrix.

    Args:
        image: square 2-D array; with ``circle`` it is taken as zero outside the inscribed circle.
        n_views: views equally spaced over [0, 180) degrees.
        circle: as in ``radon``: the sinogram has ``N`` bins (else the padded diagonal's).

    Returns:
        Sinogram (detector bins, n_views), float64, bin ``bins // 2`` on the rotation axis.
    """
    torch = _torch()

    image = np.asarray(image, dtype=np.float64)
    size = image.shape[0]
    if image.ndim != 2 or image.shape[1] != size:
        raise ValueError(f"image must be square 2-D, got shape {image.shape}")
    centre = size // 2
    yy, xx = np.mgrid[:size, :size] - centre
    if circle:
        bins, support = size, float(centre)
        image = np.where(xx**2 + yy**2 > centre**2, 0.0, image)
    else:
        bins = size + int(np.ceil(np.sqrt(2) * size - size))
        support = float(np.sqrt((xx**2 + yy**2).max()))
    op = _forward(support, int(n_views))
    half = op.half_grid
    grid = np.zeros((2 * half + 1, 2 * half + 1))
    lo = max(0, centre - half)  # the circle's image can be larger than the grid that holds its support
    hi = min(size, centre + half + 1)
    grid[lo - centre + half : hi - centre + half, lo - centre + half : hi - centre + half] = image[lo:hi, lo:hi]
    matrices = op.symmetry.matrices
    columns = torch.from_numpy(_transformed(grid, np.concatenate([matrices, -matrices]), half))
    half_bins = (op.matrix @ columns).numpy().reshape(len(op.symmetry.fundamental), op.half_u + 1, -1)
    # Bins -half_u..-1 from the turned images' bins half_u..1, then bins 0..half_u.
    turned, upright = half_bins[:, ::-1, len(matrices) :], half_bins[:, :, : len(matrices)]
    projections = np.concatenate([turned[:, :-1], upright], axis=1)
    full = np.empty((2 * op.half_u + 1, n_views))
    for k, (a, g, s) in enumerate(op.symmetry.source):
        full[:, k] = projections[a, ::s, g]
    # Place bins u in [-half_u, half_u] at radon's bin index u + bins // 2.
    sinogram = np.zeros((bins, n_views))
    first = bins // 2 - op.half_u
    src_lo, dst_lo = max(0, -first), max(0, first)
    count = min(full.shape[0] - src_lo, bins - dst_lo)
    sinogram[dst_lo : dst_lo + count] = full[src_lo : src_lo + count]
    return sinogram


def ramp_filter(size: int, filter_name: str | None) -> np.ndarray:
    """Frequency response of ``iradon``'s filters for an FFT of ``size`` (even) points (Kak & Slaney eq. 61)."""
    n = np.concatenate((np.arange(1, size / 2 + 1, 2, dtype=int), np.arange(size / 2 - 1, 0, -2, dtype=int)))
    f = np.zeros(size)
    f[0] = 0.25
    f[1::2] = -1 / (np.pi * n) ** 2
    response = 2 * np.real(np.fft.fft(f))  # the discrete ramp: no bias at DC, less aliasing than |omega|
    if filter_name == "shepp-logan":
        omega = np.pi * np.fft.fftfreq(size)[1:]
        response[1:] *= np.sin(omega) / omega
    elif filter_name == "cosine":
        response *= np.fft.fftshift(np.sin(np.linspace(0, np.pi, size, endpoint=False)))
    elif filter_name == "hamming":
        response *= np.fft.fftshift(np.hamming(size))
    elif filter_name == "hann":
        response *= np.fft.fftshift(np.hanning(size))
    elif filter_name is None:
        response[:] = 1
    elif filter_name != "ramp":
        raise ValueError(f"unknown filter {filter_name!r}")
    return response


@dataclass(frozen=True)
class _Backward:
    matrix: object  # torch CSR, rows pixels of the output set, columns (fundamental view, bin t in [-half_t, half_t])
    half_t: int
    half_grid: int
    pixels: np.ndarray  # (2, pixels): (x, y) offsets of the output pixels
    gathers: np.ndarray  # (G, pixels): flat index into the product of the value of symmetry g at each pixel
    symmetry: _Symmetry


@lru_cache(maxsize=8)
def _backward(output_size: int, circle: bool, n_views: int) -> _Backward:
    torch = _torch()

    half = output_size // 2
    sym = _symmetry(n_views)
    if circle:
        x, y = _disc(half, half)[::-1]
    else:
        y, x = (c.ravel() for c in np.mgrid[-half : half + 1, -half : half + 1])
    # Rows for half of the pixels: the value at -p is that at p of the sinogram with reversed bins (more columns).
    upper = (y > 0) | ((y == 0) & (x >= 0))
    out_x, out_y, x, y = x, y, x[upper], y[upper]
    half_t = math.ceil(half * math.sqrt(2)) + 1
    width = 2 * half_t + 1
    theta = _angles(n_views)[sym.fundamental]
    cos, sin = (torch.from_numpy(f(theta)).float() for f in (np.cos, np.sin))
    offset = torch.arange(len(theta), dtype=torch.float32) * width + half_t  # first column of each view
    xt, yt = torch.from_numpy(x.astype(np.float32))[:, None], torch.from_numpy(y.astype(np.float32))[:, None]
    cols = torch.empty((len(x), len(theta), 2), dtype=torch.int32)
    vals = torch.empty((len(x), len(theta), 2), dtype=torch.float32)
    rows = max(1, _BLOCK // len(theta))
    for start in range(0, len(x), rows):
        part = slice(start, start + rows)
        # iradon: pixel at (row offset y, column offset x) reads bin t = x cos - y sin, linearly interpolated.
        t = xt[part] * cos - yt[part] * sin
        ft = torch.floor(t)
        base = (ft + offset).to(torch.int32)
        torch.stack([base, base + 1], dim=-1, out=cols[part])
        torch.stack([1 - (t - ft), t - ft], dim=-1, out=vals[part])
    crow = np.arange(len(x) + 1, dtype=np.int64) * 2 * len(theta)
    matrix = _csr(crow, cols.view(-1), vals.view(-1), (len(x), width * len(theta)))
    lookup = np.full((2 * half + 1, 2 * half + 1), -1, dtype=np.int64)
    lookup[y + half, x + half] = np.arange(len(x))
    n_sym = len(sym.matrices)
    gathers = []
    for g, matrix_g in enumerate(sym.matrices):
        mx, my = matrix_g.T @ np.stack([out_x, out_y])
        row = lookup[my + half, mx + half]
        turned = row < 0  # M_g^T p in the lower half: read -M_g^T p in the reversed-sinogram column
        row[turned] = lookup[-my[turned] + half, -mx[turned] + half]
        gathers.append(row * 2 * n_sym + g + n_sym * turned)
    return _Backward(matrix, half_t, half, np.stack([out_x, out_y]), np.stack(gathers), sym)


def _filtered(sinogram: np.ndarray, filter_name: str | None, circle: bool) -> np.ndarray:
    """iradon's filtering: the circle's sinogram padded to its diagonal, zero-padded FFT, first bins kept."""
    if circle:
        bins = sinogram.shape[0]
        diagonal = int(np.ceil(np.sqrt(2) * bins))
        before = diagonal // 2 - bins // 2
        sinogram = np.pad(sinogram, ((before, diagonal - bins - before), (0, 0)))
    bins = sinogram.shape[0]
    padded = max(64, int(2 ** np.ceil(np.log2(2 * bins))))
    # A full complex FFT as iradon's: the windows (hann, ...) are not exactly even, so rfft would differ.
    spectrum = np.fft.fft(sinogram, n=padded, axis=0) * ramp_filter(padded, filter_name)[:, None]
    return np.real(np.fft.ifft(spectrum, axis=0)[:bins])


def iradon_fast(
    sinogram: np.ndarray, output_size: int, filter_name: str | None = "ramp", circle: bool = True
) -> np.ndarray:
    """``skimage.transform.iradon`` (linear interpolation) of a sinogram over [0, 180), via a cached matrix.

    Args:
        sinogram: (detector bins, n_views), bin ``bins // 2`` on the rotation axis.
        output_size: side of the square reconstruction.
        filter_name: ramp, shepp-logan, cosine, hamming, hann or None, as in ``iradon``.
        circle: as in ``iradon``: zero outside the inscribed circle, and the sinogram padded to its diagonal.

    Returns:
        Reconstruction (output_size, output_size), float64.
    """
    torch = _torch()

    n_views = sinogram.shape[1]
    filtered = _filtered(np.asarray(sinogram, dtype=np.float64), filter_name, circle)
    op = _backward(int(output_size), bool(circle), int(n_views))
    sym, width = op.symmetry, 2 * op.half_t + 1
    # Bin j of the filtered sinogram sits at t = j - bins // 2; embed in the symmetric range [-half_t, half_t].
    bins = filtered.shape[0]
    extended = np.zeros((width, n_views))
    first = op.half_t - bins // 2
    src_lo, dst_lo = max(0, -first), max(0, first)
    count = min(bins - src_lo, width - dst_lo)
    extended[dst_lo : dst_lo + count] = filtered[src_lo : src_lo + count]
    n_sym = len(sym.matrices)
    columns = np.zeros((len(sym.fundamental), width, 2 * n_sym), dtype=np.float32)
    for k, (a, g, s) in enumerate(sym.source):
        columns[a, :, g] = extended[::s, k]
        columns[a, :, g + n_sym] = extended[::-s, k]
    products = (op.matrix @ torch.from_numpy(columns.reshape(-1, 2 * n_sym))).numpy().ravel()
    values = sum(products[op.gathers[g]].astype(np.float64) for g in range(n_sym))
    half = op.half_grid
    grid = np.zeros((2 * half + 1, 2 * half + 1))
    grid[op.pixels[1] + half, op.pixels[0] + half] = values
    start = half - output_size // 2
    return grid[start : start + output_size, start : start + output_size] * np.pi / (2 * n_views)


def clear_cache() -> None:
    """Free the cached projection and back-projection matrices."""
    _forward.cache_clear()
    _backward.cache_clear()
