"""The demo's fallback series: a NIfTI volume from the held-out demo slices when ../shared is absent."""

import nibabel as nib
import numpy as np
import tifffile

from scripts.ctio.slices import iter_ct_slices
from scripts.demo import _demo_volume


def test_demo_volume_round_trips_the_held_out_slices(tmp_path, tiny_ct_data):
    path = _demo_volume(tiny_ct_data["test"], tmp_path / "volume.nii.gz")
    volume = nib.load(path)
    assert volume.shape == (32, 32, 10)
    first = tifffile.imread(tiny_ct_data["test"] / "test000.tiff")
    slices = list(iter_ct_slices(path, hu_window=(-1000.0, 400.0)))
    assert len(slices) == 10
    # Streamed back in the display layout and re-windowed, the first slice is the original image.
    assert np.allclose(slices[0][0], first, atol=1e-5)
