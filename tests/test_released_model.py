"""The released weights (models/model.pt): listed with their hash, small, and ranking an unseen patient's scans.

The unseen patient is pydicom-data's CQ500 head slice (693_UNCR.dcm), which no training set uses (its licence is
non-commercial, see scripts.synthesis.training_sets.EXCLUDED). It is simulated here by the bundle's own scanner model,
so the test needs neither ../shared nor a download.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from scripts.ctio.window import apply_hu_window
from scripts.nets.manifest import verified_checkpoint
from scripts.nets.networks import create_network
from scripts.nets.weights import load_state_dict_file
from scripts.synthesis.demo_data import load_ct_sources
from scripts.synthesis.simulate import SimulatorConfig, SliceSimulator
from scripts.synthesis.training_sets import EXCLUDED

BUNDLE = Path(__file__).resolve().parent.parent / "tfkt_bundle"
MODEL = BUNDLE / "models" / "model.pt"
UNSEEN = "693_UNCR.dcm"


@pytest.fixture(scope="module")
def released_net() -> torch.nn.Module:
    net = create_network("hybrid_lite0")
    net.load_state_dict(load_state_dict_file(verified_checkpoint(MODEL)))
    return net.eval()


@pytest.fixture(scope="module")
def unseen_scans() -> dict[str, np.ndarray]:
    """Full dose, a quarter, 6 % of it, and an eighth of the views at full dose, of one unseen slice."""
    assert UNSEEN in EXCLUDED, "the test's slice must be one that training never sees"
    try:
        sources = load_ct_sources(("explicit_VR-UN.dcm", UNSEEN))
    except RuntimeError as err:
        pytest.skip(f"{UNSEEN} is not installed (pip install pydicom-data): {err}")
    source = next((s for s in sources if s.name == UNSEEN), None)
    if source is None:
        pytest.skip(f"{UNSEEN} is not installed (pip install pydicom-data)")
    sim = SliceSimulator(source.hu, source.spacing_mm, SimulatorConfig(target_noise_hu=15.0))
    conditions = {"full": (1.0, 1), "quarter": (0.25, 1), "dose_0.06": (0.06, 1), "views_1/8": (1.0, 8)}
    return {
        name: apply_hu_window(sim.simulate(dose, sim.full_views // divisor, seed)).astype(np.float32)
        for seed, (name, (dose, divisor)) in enumerate(conditions.items())
    }


def test_released_weights_are_listed_small_and_verified():
    assert MODEL.stat().st_size <= 15 * 2**20
    manifest = (BUNDLE / "large_files.yml").read_text()
    assert "path: models/model.pt" in manifest and "hash_type: sha256" in manifest
    assert verified_checkpoint(MODEL) == str(MODEL)  # the committed file matches its listed hash


def test_released_model_ranks_an_unseen_patients_dose_and_views(released_net, unseen_scans):
    with torch.inference_mode():
        score = {k: released_net(torch.from_numpy(v)[None, None]).item() for k, v in unseen_scans.items()}
    assert score["full"] > score["quarter"] > score["dose_0.06"], score
    assert score["full"] > score["views_1/8"], score
    assert all(-0.5 <= s <= 4.5 for s in score.values()), score  # on the 0-4 scale, not a raw logit


def test_mixed_precision_keeps_the_released_models_scores_and_ranking(released_net, unseen_scans):
    pytest.importorskip("openvino", reason="the OpenVINO backend is the optional 'export' extra")
    from scripts.nets.openvino_runtime import OpenVinoNetwork

    mixed = OpenVinoNetwork(released_net, precision="mixed")
    with torch.inference_mode():
        exact = {k: released_net(torch.from_numpy(v)[None, None]).item() for k, v in unseen_scans.items()}
        fast = {k: mixed(torch.from_numpy(v)[None, None]).item() for k, v in unseen_scans.items()}
    assert max(abs(fast[k] - exact[k]) for k in exact) < 0.05, (fast, exact)
    assert sorted(fast, key=fast.get) == sorted(exact, key=exact.get)
