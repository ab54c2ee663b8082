"""Network presets: shapes, output range, training signal, the published parameter count."""

import numpy as np
import pytest
import torch

from scripts.nets.networks import PRESETS, SpatialHybridIQA, count_parameters, create_network, sincos_position_2d

# The authors' build of TFKT-V2 (EfficientNetV2-L + Swin-V2-B, 1-channel stems) has this many parameters.
TFKT_V2_PARAMS = 209_383_449


@pytest.fixture(scope="module")
def tfkt_v2():
    torch.manual_seed(0)
    return create_network("tfkt_v2")


def test_tfkt_v2_parameter_count_within_one_percent(tfkt_v2):
    n = count_parameters(tfkt_v2)
    assert abs(n - TFKT_V2_PARAMS) / TFKT_V2_PARAMS < 0.01, n


def test_tfkt_v2_output_shape(tfkt_v2):
    tfkt_v2.eval()
    with torch.no_grad():
        y = tfkt_v2(torch.rand(2, 1, 96, 96))
    assert y.shape == (2, 1)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "tfkt_v2"])
@pytest.mark.parametrize("size", [(32, 32), (64, 96), (160, 160)])
def test_hybrid_presets_any_size(preset, size):
    net = create_network(preset).eval()
    with torch.no_grad():
        y = net(torch.rand(3, 1, *size))
    assert y.shape == (3, 1)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("bias, bound", [(100.0, 4.0), (-100.0, 0.0)])
def test_eval_mode_clamps_to_output_range_training_mode_does_not(bias, bound):
    torch.manual_seed(0)
    net = create_network("hybrid_tiny")
    with torch.no_grad():
        net.head.fc.bias.fill_(bias)  # push every score far off the 0-4 scale
    x = torch.rand(2, 1, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), torch.full((2, 1), bound))
    net.train()
    y = net(x)
    assert torch.all(torch.sign(y - bound) == np.sign(bias)), y
    # Unclamped, d(sum of scores)/d(bias) is exactly the batch size; a clamp would make it 0.
    y.sum().backward()
    assert net.head.fc.bias.grad.tolist() == [2.0]


def test_unbounded_output_when_range_is_none():
    net = create_network("hybrid_tiny", output_range=None).eval()
    with torch.no_grad():
        net.head.fc.bias.fill_(-7.0)
        net.head.fc.weight.zero_()
        assert torch.allclose(net(torch.rand(1, 1, 32, 32)), torch.tensor([[-7.0]]))


def test_initial_bias_is_mid_scale():
    net = create_network("hybrid_tiny", output_range=(1.0, 5.0))
    assert net.head.fc.bias.item() == pytest.approx(3.0)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 32, 32), (2, 1, 1, 32, 32)])
def test_rejects_wrong_input_shape(shape):
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 1, H, W\)"):
        create_network("hybrid_tiny")(torch.rand(*shape))


def test_unknown_preset_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown network preset 'nope'"):
        create_network("nope")
    with pytest.raises(ValueError, match="pooling"):
        SpatialHybridIQA(backbone="test_efficientnet", pooling="max")
    with pytest.raises(ValueError, match="feature_index"):
        SpatialHybridIQA(backbone="test_efficientnet", feature_index=9)
    with pytest.raises(ValueError, match="divisible by 4"):
        SpatialHybridIQA(backbone="test_efficientnet", embed_dim=30, num_heads=2)


def test_token_grid_is_pooled_to_max_side():
    net = create_network("hybrid_tiny", max_tokens_side=4).eval()
    with torch.no_grad():
        tokens = net.forward_features(torch.rand(1, 1, 256, 256))
    assert tokens.shape[1] == 16


def test_positions_are_distinct_per_token_and_size_free():
    pos = sincos_position_2d(4, 5, 32)
    assert pos.shape == (20, 32)
    assert len({tuple(r.tolist()) for r in pos.round(decimals=5)}) == 20
    # The first half encodes the row only: tokens of one row share it.
    assert torch.equal(pos[0, :16], pos[4, :16]) and not torch.equal(pos[0, :16], pos[5, :16])
    assert torch.allclose(sincos_position_2d(2, 2, 32), sincos_position_2d(3, 3, 32)[[0, 1, 3, 4]])


def test_gradient_steps_lower_the_loss():
    torch.manual_seed(0)
    net = create_network("hybrid_tiny", dropout=0.0)
    x = torch.rand(8, 1, 32, 32)
    y = torch.linspace(0, 4, 8).unsqueeze(1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("preset", ["hybrid_tiny", "hybrid_lite0"])
def test_default_networks_script_to_torchscript_with_equal_scores(preset):
    torch.manual_seed(0)
    net = create_network(preset).eval()
    scripted = torch.jit.script(net)
    for size in (64, 96):  # any slice size: positions are computed for the grid at hand
        x = torch.rand(2, 1, size, size)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)


def test_dropped_blocks_are_the_identity_and_the_rest_keeps_the_full_networks_weights():
    torch.manual_seed(0)
    full = create_network("hybrid_lite0").eval()
    cheaper = create_network("hybrid_lite0", drop_blocks=["1.1", "4.2"]).eval()
    state = full.state_dict()
    kept = {k: v for k, v in state.items() if not k.startswith(("backbone.blocks.1.1.", "backbone.blocks.4.2."))}
    assert set(cheaper.state_dict()) == set(kept) and len(kept) < len(state)
    cheaper.load_state_dict(kept)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        reference = full(x)
        assert not torch.allclose(cheaper(x), reference)  # the two blocks did contribute
        full.backbone.blocks[1][1] = torch.nn.Identity()
        full.backbone.blocks[4][2] = torch.nn.Identity()
        torch.testing.assert_close(cheaper(x), full(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, message",
    [("0.0", "block 0.0 has no identity skip"), ("9.9", "'9.9' is not a 'stage.block' name"), ("4", "'4' is not")],
)
def test_only_residual_blocks_can_be_dropped(name, message):
    with pytest.raises(ValueError, match=message):
        create_network("hybrid_lite0", drop_blocks=[name])


def test_fast_preset_is_the_default_less_seven_blocks():
    default, fast = create_network("hybrid_lite0"), create_network("hybrid_lite0_fast")
    assert fast.drop_blocks == ("1.1", "2.1", "3.2", "4.1", "4.2", "5.2", "5.3")
    assert set(fast.state_dict()) < set(default.state_dict())
    assert count_parameters(fast) == 1_853_762 and count_parameters(default) == 3_264_834


@pytest.mark.parametrize("preset, stages", [("hybrid_tiny", 5), ("hybrid_lite0", 7), ("hybrid_lite0_fast", 7)])
def test_split_front_and_rest_compose_to_the_network_exactly(preset, stages):
    net = create_network(preset).eval()
    x = torch.rand(2, 1, 96, 64)
    with torch.no_grad():
        whole = net(x)
        for front_stages in range(stages + 1):
            front, rest = net.split(front_stages)
            assert torch.equal(rest(front(x)), whole), front_stages
    assert not list(front.parameters(recurse=False)) and front.network is net  # the network's own weights
    with pytest.raises(ValueError, match=f"front_stages must be 0 to {stages}"):
        net.split(stages + 1)
    # Each half takes the network's mode: a half made in training mode would, when its mode is set back (as the ONNX
    # exporter does after tracing), put the whole network in training mode.
    assert not front.training and not rest.training
    assert all(half.training for half in net.train().split(1))
