"""Offline weight loading: the lite0 ImageNet file, 1-channel stems, clear errors."""

import logging

import numpy as np
import pytest
import timm
import torch
from skimage import data
from skimage.transform import resize

from scripts.nets.networks import create_network
from scripts.nets.weights import (
    architecture_mismatch,
    initialise,
    lite0_weights_path,
    load_imagenet_backbone,
    load_into,
    load_state_dict_file,
    remap_by_order,
)

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def _chelsea_batch(gray: bool) -> torch.Tensor:
    img = resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)  # [0, 1] RGB
    if gray:
        img = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return torch.from_numpy(img)[None, None]
    return torch.from_numpy(img).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def lite0_rgb():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    return load_imagenet_backbone(model, model_name="tf_efficientnet_lite0")


def test_lite0_package_weights_classify_chelsea_as_a_cat(lite0_rgb):
    with torch.no_grad():
        logits = lite0_rgb((_chelsea_batch(gray=False) - 0.5) / 0.5)
    assert int(logits.argmax()) in CAT_CLASSES


def test_one_channel_stem_equals_grey_replicated_to_rgb(lite0_rgb):
    mono = timm.create_model("tf_efficientnet_lite0", pretrained=False, in_chans=1).eval()
    load_imagenet_backbone(mono, model_name="tf_efficientnet_lite0")
    grey = (_chelsea_batch(gray=True) - 0.5) / 0.5
    with torch.no_grad():
        a, b = mono(grey), lite0_rgb(grey.expand(-1, 3, -1, -1))
    assert torch.allclose(a, b, atol=1e-3)
    assert int(a.argmax()) in CAT_CLASSES


def test_hybrid_backbone_loads_every_tensor_from_the_package(caplog):
    torch.manual_seed(0)
    net = create_network("hybrid_lite0")
    before = net.backbone.conv_stem.weight.clone()
    with caplog.at_level("INFO"):
        load_imagenet_backbone(net)
    reference = load_state_dict_file(lite0_weights_path())["_conv_stem.weight"].sum(1, keepdim=True)
    assert not torch.equal(before, net.backbone.conv_stem.weight)
    assert torch.equal(net.backbone.conv_stem.weight, reference)
    n_backbone = len(net.backbone.state_dict())
    assert f"loaded {n_backbone}/{n_backbone} tensors" in caplog.text


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_imagenet_backbone(create_network("hybrid_tiny"), missing)


def test_no_bundled_weights_for_other_backbones():
    with pytest.raises(FileNotFoundError, match="pass a file path"):
        load_imagenet_backbone(create_network("hybrid_tiny"))


def test_remap_by_order_checks_count_and_shape():
    ref = {"a": torch.zeros(2), "b": torch.zeros(3)}
    assert list(remap_by_order({"x": torch.ones(2), "y": torch.ones(3)}, ref)) == ["a", "b"]
    with pytest.raises(ValueError, match="shape mismatch"):
        remap_by_order({"x": torch.ones(3), "y": torch.ones(2)}, ref)
    with pytest.raises(ValueError, match="by order"):
        remap_by_order({"x": torch.ones(2)}, ref)


def test_load_into_refuses_unrelated_and_conflicting_files():
    net = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="no tensor"):
        load_into(net, {"foo": torch.zeros(1)})
    with pytest.raises(ValueError, match="other shapes"):
        load_into(net, {"weight": torch.zeros(5, 3)})


def test_checkpoint_round_trip_with_wrapper(tmp_path):
    torch.manual_seed(0)
    src = create_network("hybrid_tiny")
    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    dst = create_network("hybrid_tiny")
    assert initialise(dst, "pretrained", pretrained=tmp_path / "ckpt.pt") == "pretrained"
    x = torch.rand(2, 1, 32, 32)
    src.eval(), dst.eval()
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_auto_init_never_loads_another_architecture(tmp_path, caplog):
    other = create_network("hybrid_tiny", embed_dim=16, num_heads=2)
    torch.save(other.state_dict(), tmp_path / "pretrained.pt")
    net = create_network("hybrid_tiny")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with caplog.at_level(logging.INFO):
        assert initialise(net, "auto", pretrained=tmp_path / "pretrained.pt") == "scratch"
    assert "saved from another network" in caplog.text and "reshaped" in caplog.text
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="saved from another network .*pre-train this network_preset first"):
        initialise(net, "pretrained", pretrained=tmp_path / "pretrained.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt does not exist"):
        initialise(net, "pretrained", pretrained=tmp_path / "absent.pt")


def test_auto_init_loads_its_own_architecture(tmp_path):
    torch.manual_seed(1)
    src = create_network("hybrid_tiny")
    torch.save(src.state_dict(), tmp_path / "pretrained.pt")
    dst = create_network("hybrid_tiny")
    assert architecture_mismatch(dst, src.state_dict()) == ""
    assert initialise(dst, "auto", pretrained=tmp_path / "pretrained.pt") == "pretrained"
    assert all(torch.equal(src.state_dict()[k], v) for k, v in dst.state_dict().items())


def test_a_network_with_dropped_blocks_starts_from_the_full_networks_checkpoint(tmp_path, caplog):
    torch.manual_seed(2)
    full = create_network("hybrid_lite0")
    torch.save(full.state_dict(), tmp_path / "model.pt")
    cheaper = create_network("hybrid_lite0_fast")
    with caplog.at_level(logging.INFO):
        assert initialise(cheaper, "auto", pretrained=tmp_path / "model.pt") == "pretrained"
    dropped = len(full.state_dict()) - len(cheaper.state_dict())
    assert dropped > 0
    assert f"left out {dropped} tensors of the dropped blocks 1.1, 2.1, 3.2, 4.1, 4.2, 5.2, 5.3" in caplog.text
    assert all(torch.equal(full.state_dict()[k], v) for k, v in cheaper.state_dict().items())
    # The other way round is another architecture: the full network misses the dropped blocks' tensors.
    with pytest.raises(ValueError, match=f"{dropped} missing"):
        initialise(create_network("hybrid_lite0"), "pretrained", pretrained=_saved(cheaper, tmp_path / "fast.pt"))


def _saved(network, path):
    torch.save(network.state_dict(), path)
    return path
