"""The inference workflow (configs/inference.json) on tiny inputs with the tiny network: fast, no training."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import create_workflow

from scripts.nets.networks import create_network

from conftest import BUNDLE_ROOT


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    network = create_network("hybrid_tiny")
    torch.save(network.state_dict(), tmp_path / "model.pt")
    return network.eval(), tmp_path / "model.pt"


def _infer(tmp_path, ckpt, inputs, **overrides):
    out = tmp_path / "out"
    workflow = create_workflow(
        config_file=str(BUNDLE_ROOT / "configs" / "inference.json"),
        logging_file=False,
        run_id="run",
        bundle_root=str(BUNDLE_ROOT),
        network_preset="hybrid_tiny",
        ckpt_path=str(ckpt),
        output_dir=str(out),
        dataset_dir=inputs,
        **overrides,
    )
    workflow.run()
    workflow.finalize()
    rows = list(csv.DictReader(open(out / "slice_predictions.csv")))
    return rows, list(csv.DictReader(open(out / "index.csv")))


def test_scores_are_the_networks_outputs_on_the_windowed_slices(tmp_path, tiny_model, tiny_ct_data, monkeypatch):
    monkeypatch.chdir(tmp_path)  # loads from any working directory
    network, ckpt = tiny_model
    rows, summary = _infer(tmp_path, ckpt, str(tiny_ct_data["test"]), batch_size=3)
    assert [r["name"] for r in rows] == [f"test{i:03d}.tiff" for i in range(10)]
    images = torch.stack([torch.from_numpy(tifffile.imread(tiny_ct_data["test"] / r["name"]))[None] for r in rows])
    with torch.no_grad():
        expected = network(images).reshape(-1).numpy()
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], expected, atol=1e-5)
    (series,) = summary  # one folder of image files: one series
    assert (int(series["n_slices"]), float(series["threshold"])) == (10, 2.0)


def test_nifti_volume_is_windowed_by_the_configs_hu_window(tmp_path, tiny_model):
    import nibabel as nib

    network, ckpt = tiny_model
    hu = np.random.default_rng(0).uniform(-1200, 600, size=(32, 32, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.eye(4)), tmp_path / "v.nii.gz")
    window = [-160.0, 240.0]
    rows, summary = _infer(tmp_path, ckpt, str(tmp_path / "v.nii.gz"), hu_window=window)
    assert [float(r["slice_index"]) for r in rows] == [0.0, 1.0, 2.0]
    # The stored volume's slice k in the display layout (see scripts.ctio.nifti), windowed with the override.
    slices = [np.clip((hu[::-1, ::-1, k].T - window[0]) / (window[1] - window[0]), 0, 1) for k in range(3)]
    with torch.no_grad():
        expected = network(torch.from_numpy(np.stack(slices)[:, None].astype(np.float32))).reshape(-1).numpy()
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], expected, atol=1e-5)
    (series,) = summary
    assert int(series["n_slices"]) == 3 and float(series["mean"]) == pytest.approx(float(expected.mean()), abs=1e-5)


def test_a_missing_checkpoint_is_named_before_any_work(tmp_path, tiny_ct_data):
    with pytest.raises(Exception) as err:
        _infer(tmp_path, tmp_path / "absent.pt", str(tiny_ct_data["test"]))
    assert "absent.pt does not exist" in repr(err.value) + repr(err.value.__cause__)
