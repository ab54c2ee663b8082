"""Shared test set-up: the bundle root on sys.path (as the MONAI runner does) and the optional ../shared data."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE_ROOT = REPO_ROOT / "tfkt_bundle"
SHARED = REPO_ROOT.parent / "shared"

if str(BUNDLE_ROOT) not in sys.path:
    sys.path.insert(0, str(BUNDLE_ROOT))


def _shared_dir(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: shared test data lives beside the checkout and is optional")
    return path


@pytest.fixture
def shared_ct_series() -> Path:
    """The 20-slice JPEG 2000 abdomen DICOM series (evaluation and loading tests only)."""
    return _shared_dir("data", "ct_series_abdomen")


@pytest.fixture
def shared_ldctiqac_samples() -> Path:
    """Ten real scored LDCTIQAC 2023 test images (evaluation only: never train or tune on them)."""
    return _shared_dir("data", "ldctiqac_samples")


@pytest.fixture
def shared_reference_predictions() -> Path:
    """The published TFKT-V2 predictions on the 300 LDCTIQAC 2023 test images."""
    return _shared_dir("reference", "tfkt_v2_ldctiqac_test_predictions.csv")
