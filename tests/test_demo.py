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


def test_every_demo_step_uses_the_demo_models_folder_not_the_released_one(tmp_path, monkeypatch, capsys):
    """The released models/model.pt must survive `make demo`: each workflow the demo runs gets --ckpt_dir."""
    from scripts import demo

    (tmp_path / "ct_test").mkdir()
    (tmp_path / "ct_test" / "test.json").write_text("{}")  # present: the demo does not rebuild its data
    monkeypatch.setattr(demo, "SHARED_SERIES", tmp_path)  # scored as given, without building a volume
    commands = []
    monkeypatch.setattr(demo, "_run", commands.append)
    demo.main(["--data", str(tmp_path)])
    assert [c[0] for c in commands] == ["pretraining", "training", "evaluating", "run"]
    for command in commands:
        assert command[command.index("--ckpt_dir") + 1] == "eval/demo_models", command
    printed = capsys.readouterr().out
    assert str(demo.BUNDLE / "eval" / "demo_models" / "model.pt") in printed
    assert str(demo.BUNDLE / "models" / "model.pt") not in printed
