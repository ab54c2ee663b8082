"""README's first command (`make demo`): what the bundle can do so far, on built-in data only.

Builds each network preset, initialises the default one from the offline ImageNet weights and scores a real
512x512 CT slice that ships with pydicom-data. The model is untrained at this stage, so the score only shows
that the pipeline runs end to end.
"""

from __future__ import annotations

import time

import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file

from scripts.networks import PRESETS, count_parameters, create_network
from scripts.transforms import window_hu
from scripts.weights import load_imagenet_backbone

DEMO_SLICE = "693_UNCR.dcm"  # uncompressed 512x512 CT slice in pydicom-data


def demo_slice() -> np.ndarray:
    """A real CT slice in HU from pydicom-data, windowed to [0, 1]."""
    ds = pydicom.dcmread(get_testdata_file(DEMO_SLICE))
    hu = pydicom.pixels.apply_rescale(ds.pixel_array, ds).astype(np.float32)
    return window_hu(hu)


def main() -> None:
    for preset in PRESETS:
        print(f"network preset {preset:13s} {count_parameters(create_network(preset)):>13,d} parameters")
    net = load_imagenet_backbone(create_network("hybrid_lite0")).eval()
    image = torch.from_numpy(demo_slice())[None, None]
    start = time.perf_counter()
    with torch.inference_mode():
        score = float(net(image))
    print(f"{DEMO_SLICE}: {tuple(image.shape)} -> score {score:.3f} (untrained head) in "
          f"{time.perf_counter() - start:.2f} s on the CPU")


if __name__ == "__main__":
    main()
