"""Fixtures of the MONAI Label app's tests: a tiny trained checkpoint and small CT inputs (image files, NIfTI).

Run in the app's own environment (``make test-label``): monailabel pins numpy < 2, the core .venv has 2.x.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

APP_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = APP_DIR.parents[1]
TINY_PRESET = "hybrid_tiny"
SIZE, N_SLICES = 64, 5

pytest.importorskip("monailabel", reason="monailabel is not installed here: run `make test-label` (.venv-label)")
# As MONAI Label itself does when it loads the app: main.py and lib/ import from the app folder. The repository's
# test helpers (tests/model_helpers.py) serve these tests too.
sys.path.insert(0, str(APP_DIR))
sys.path.insert(1, str(REPO_ROOT / "tests"))

from model_helpers import noise_scorer_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny network taught for a second to score noise down, so that scores differ between slices."""
    return noise_scorer_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", SIZE, TINY_PRESET)


def phantom_hu(rng: np.random.Generator, noise_sd: float) -> np.ndarray:
    """A water disc in air with Gaussian noise, in HU."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    body = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2
    return np.where(body, 40.0, -1000.0) + rng.normal(0, noise_sd, (SIZE, SIZE))


@pytest.fixture(scope="session")
def studies(tmp_path_factory) -> Path:
    """A datastore folder: two 8-bit PNG slices (clean, noisy) and a 16-bit TIFF, already windowed."""
    from PIL import Image

    from scripts.ctio.window import apply_hu_window

    root, rng = tmp_path_factory.mktemp("studies"), np.random.default_rng(1)
    for name, sd in {"clean": 5.0, "noisy": 120.0}.items():
        image = np.round(apply_hu_window(phantom_hu(rng, sd)) * 255).astype(np.uint8)
        Image.fromarray(image).save(root / f"{name}.png")
    image16 = np.round(apply_hu_window(phantom_hu(rng, 40.0)) * 65535).astype(np.uint16)
    Image.fromarray(image16).save(root / "mid.tif")
    return root


@pytest.fixture(scope="session")
def volume(tmp_path_factory) -> Path:
    """A NIfTI volume of N_SLICES axial slices in HU, noise growing slice by slice."""
    import nibabel as nib

    rng = np.random.default_rng(2)
    hu = np.stack([phantom_hu(rng, sd) for sd in np.linspace(5, 150, N_SLICES)], axis=-1).astype(np.int16)
    path = tmp_path_factory.mktemp("volume") / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([0.7, 0.7, 2.0, 1.0])), path)
    return path
