"""Hybrid CNN -> transformer regressors for no-reference CT image quality (one score per slice).

Two layouts share one contract: input ``(B, 1, H, W)`` float32 in [0, 1] (a CT slice windowed from HU),
output ``(B, 1)``, the radiologist-scale score (0 = bad ... 4 = excellent). The head is linear; in eval mode the
score is clamped to ``output_range`` so that exported and served models never report an off-scale value, while
training sees the unclamped value so that gradients flow at the scale's ends.

* ``TFKTV2Net`` - the published TFKT-V2 layout (Rifa et al., J. Med. Imaging 12(5):051805, 2025):
  EfficientNetV2-L with a 1-channel stem -> Linear(1280 -> 4096) -> reshape to a 1x64x64 "image" -> Swin-V2-B with a
  1-channel 4x4 patch embedding -> Linear(1024 -> 1). Built from torchvision parts, 209,383,449 parameters, as the
  authors' build. It exists to reproduce and compare against.
* ``SpatialHybridIQA`` - the CNN's spatial feature map becomes transformer tokens with 2-D sine-cosine positions
  (defined for any grid, so any slice size works), a small transformer encoder mixes them, attention pooling ->
  linear head. The published bridge discards all spatial layout although noise and streaks are local textures;
  keeping the map as tokens is the approach of TOPIQ, TReS and MANIQA for natural images.

Weights are never loaded in a constructor: see ``scripts.nets.weights``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import timm
import torch
from torch import nn

__all__ = ["SpatialHybridIQA", "TFKTV2Net", "PRESETS", "create_network", "count_parameters"]


class _ScoreHead(nn.Module):
    """Linear regression head whose bias starts mid-scale, clamped to ``output_range`` in eval mode only."""

    def __init__(self, in_features: int, output_range: tuple[float, float] | None, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features) if norm else nn.Identity()
        self.fc = nn.Linear(in_features, 1)
        self.output_range = tuple(output_range) if output_range is not None else None
        if self.output_range is not None:
            # Starting at the scale's middle avoids a first epoch spent only on learning the offset.
            nn.init.constant_(self.fc.bias, 0.5 * (self.output_range[0] + self.output_range[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(self.norm(x))
        if self.output_range is not None and not self.training:
            out = out.clamp(*self.output_range)
        return out


def _check_input(x: torch.Tensor, in_chans: int) -> None:
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise ValueError(f"expected input of shape (B, {in_chans}, H, W), got {list(x.shape)}")


def sincos_position_2d(
    height: int, width: int, dim: int, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes of shape (height * width, dim), row-major.

    Half of ``dim`` encodes the row, half the column; ``dim`` must be divisible by 4.
    """
    if dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for 2-D sine-cosine positions, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    ys = ys.reshape(-1, 1) * omega
    xs = xs.reshape(-1, 1) * omega
    pos = torch.cat([ys.sin(), ys.cos(), xs.sin(), xs.cos()], dim=1)
    return pos.to(dtype) if dtype is not None else pos


def _residual_block(backbone: nn.Module, name: str) -> tuple[int, int]:
    """(stage, index) of a backbone block named ``"stage.block"`` that has an identity skip, so it can be left out."""
    try:
        stage, index = (int(part) for part in name.split("."))
        block = backbone.blocks[stage][index]
    except (ValueError, IndexError, TypeError):
        raise ValueError(f"drop_blocks: {name!r} is not a 'stage.block' name of this backbone") from None
    if not getattr(block, "has_skip", False):
        raise ValueError(f"drop_blocks: block {name} has no identity skip (it changes the shape), so it cannot go")
    return stage, index


class SpatialHybridIQA(nn.Module):
    """CNN feature map as transformer tokens, attention pooling, scalar quality score.

    Args:
        backbone: timm model name; created with ``features_only=True`` and a 1-channel stem.
        feature_index: which backbone feature level becomes the tokens (-1 = the deepest).
        embed_dim: token width after the 1x1 projection.
        depth: transformer encoder layers.
        num_heads: attention heads per layer.
        mlp_ratio: feed-forward width as a multiple of ``embed_dim``.
        dropout: dropout in the encoder and before the head.
        max_tokens_side: token grids larger than this per side are average-pooled down to it, bounding the
            attention cost for big slices (None = never pool).
        pooling: "attention" (learned per-token weights) or "mean".
        in_chans: input channels (1 for CT).
        input_mean: subtracted from the [0, 1] input before the backbone.
        input_std: divides the input after the mean; with 0.5/0.5 the backbone sees [-1, 1], as tf_* weights expect.
        output_range: eval-mode clamp and initial bias centre; None leaves the score unbounded.
        drop_blocks: backbone blocks left out, as ``"stage.block"`` names (``"4.1"`` is ``backbone.blocks[4][1]``);
            only blocks with an identity skip can go, and each becomes the identity: a cheaper network that starts
            from a full network's weights (``scripts.nets.weights`` leaves the dropped blocks' tensors out).
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        feature_index: int = -1,
        embed_dim: int = 128,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        max_tokens_side: int | None = 16,
        pooling: str = "attention",
        in_chans: int = 1,
        input_mean: float = 0.5,
        input_std: float = 0.5,
        output_range: tuple[float, float] | None = (0.0, 4.0),
        drop_blocks: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be 'attention' or 'mean', got {pooling!r}")
        if embed_dim % 4 or embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by 4 and by num_heads ({num_heads})")
        self.backbone_name = backbone
        self.in_chans = in_chans
        self.input_mean = input_mean
        self.input_std = input_std
        self.max_tokens_side = max_tokens_side
        self.pooling = pooling
        self.backbone = timm.create_model(backbone, pretrained=False, features_only=True, in_chans=in_chans)
        self.drop_blocks = tuple(dict.fromkeys(drop_blocks))
        for name in self.drop_blocks:
            stage, index = _residual_block(self.backbone, name)
            self.backbone.blocks[stage][index] = nn.Identity()
        n_levels = len(self.backbone.feature_info)
        if not -n_levels <= feature_index < n_levels:
            raise ValueError(f"feature_index {feature_index} out of range for {backbone} ({n_levels} levels)")
        self.feature_index = feature_index % n_levels
        feat_chs = self.backbone.feature_info.channels()[self.feature_index]
        self.proj = nn.Sequential(nn.Conv2d(feat_chs, embed_dim, 1), nn.GELU())
        layer = nn.TransformerEncoderLayer(
            embed_dim,
            num_heads,
            int(embed_dim * mlp_ratio),
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.attn_pool = nn.Linear(embed_dim, 1) if pooling == "attention" else None
        self.drop = nn.Dropout(dropout)
        self.head = _ScoreHead(embed_dim, output_range, norm=False)
        self.num_features = embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the encoded tokens, shape (B, N, embed_dim)."""
        return self.forward_tokens(x)[0]

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Return the encoded tokens (B, N, embed_dim) and their grid (rows, columns), N = rows * columns, row-major:
        token ``i`` covers the slice region at row ``i // columns``, column ``i % columns`` of that grid."""
        _check_input(x, self.in_chans)
        x = (x - self.input_mean) / self.input_std
        return self._encode(self.backbone(x)[self.feature_index])

    def _encode(self, fmap: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.max_tokens_side is not None and max(fmap.shape[-2:]) > self.max_tokens_side:
            fmap = self._pool_tokens(fmap)
        fmap = self.proj(fmap)
        b, c, h, w = fmap.shape
        tokens = fmap.flatten(2).transpose(1, 2)
        tokens = tokens + sincos_position_2d(h, w, c, device=tokens.device, dtype=tokens.dtype)
        return self.norm(self.encoder(tokens)), (h, w)

    def _pool_tokens(self, fmap: torch.Tensor) -> torch.Tensor:
        height, width = int(fmap.shape[-2]), int(fmap.shape[-1])  # plain ints, also when traced for export
        side = (min(height, self.max_tokens_side), min(width, self.max_tokens_side))
        stride = (height // side[0], width // side[1])
        if (side[0] * stride[0], side[1] * stride[1]) == (height, width):
            # The same average as the adaptive pool when the grid divides evenly (e.g. 1024x1024 slices), in a form
            # that the ONNX exporter can trace.
            return nn.functional.avg_pool2d(fmap, stride)
        return nn.functional.adaptive_avg_pool2d(fmap, side)

    def pool_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """Each token's weight in the pooled vector, shape (B, N, 1), summing to 1 over the tokens: the learned
        attention, or uniform for mean pooling."""
        if self.attn_pool is None:
            return torch.full_like(tokens[..., :1], 1.0 / tokens.shape[1])
        return torch.softmax(self.attn_pool(tokens), dim=1)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool tokens to one vector and regress the score (or return the pooled vector)."""
        if self.attn_pool is not None:
            pooled = (self.pool_weights(tokens) * tokens).sum(dim=1)
        else:
            pooled = tokens.mean(dim=1)
        pooled = self.drop(pooled)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def split(self, front_stages: int) -> tuple[nn.Module, nn.Module]:
        """The network as two modules, ``rest(front(x)) == self(x)``: the front normalises the input and runs the
        backbone's stem and its first ``front_stages`` stages, the rest runs everything after. Both share this
        network's weights. For running the front, which sees the full-resolution noise texture, at a higher
        precision than the rest (``scripts.nets.openvino_runtime``)."""
        last = _feature_stage(self)
        if not hasattr(self.backbone, "conv_stem") or not 0 <= front_stages <= last:
            raise ValueError(f"front_stages must be 0 to {last} for this network's backbone, got {front_stages}")
        # In this network's mode: setting a module's mode sets its children's, so a half in training mode would put
        # the whole network in training mode (as the ONNX exporter does when it restores the mode it found).
        return _Front(self, front_stages).train(self.training), _Rest(self, front_stages, last).train(self.training)


def _feature_stage(network: SpatialHybridIQA) -> int:
    """How many backbone stages run before the feature level that becomes the tokens (0: the stem's output)."""
    module = network.backbone.feature_info.module_name()[network.feature_index]
    return int(module.split(".")[1]) + 1 if module.startswith("blocks.") else 0


class _Front(nn.Module):
    """Input normalisation, the backbone's stem and its first stages of a ``SpatialHybridIQA`` (see ``split``)."""

    def __init__(self, network: SpatialHybridIQA, stages: int) -> None:
        super().__init__()
        self.network, self.stages = network, stages
        self.in_chans = network.in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_chans)
        backbone = self.network.backbone
        x = backbone.bn1(backbone.conv_stem((x - self.network.input_mean) / self.network.input_std))
        for stage in backbone.blocks[: self.stages]:
            x = stage(x)
        return x


class _Rest(nn.Module):
    """The stages after a ``_Front`` up to the token level, then the transformer and the head (see ``split``)."""

    def __init__(self, network: SpatialHybridIQA, start: int, stop: int) -> None:
        super().__init__()
        self.network, self.start, self.stop = network, start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.network.backbone.blocks[self.start : self.stop]:
            x = stage(x)
        tokens, _ = self.network._encode(x)
        return self.network.forward_head(tokens)


class TFKTV2Net(nn.Module):
    """The published TFKT-V2 network: EfficientNetV2-L -> 4096-vector as a 1x64x64 image -> Swin-V2-B -> score.

    Args:
        bridge_side: side of the square "image" the CNN vector is reshaped into (64 in the paper).
        dropout: dropout before the CNN's Linear(1280 -> side**2), as torchvision's EfficientNetV2-L classifier.
        output_range: eval-mode clamp and initial bias centre; None leaves the score unbounded.
    """

    def __init__(
        self, bridge_side: int = 64, dropout: float = 0.4, output_range: tuple[float, float] | None = (0.0, 4.0)
    ) -> None:
        super().__init__()
        from torchvision.models import efficientnet_v2_l, swin_v2_b

        self.in_chans = 1
        self.bridge_side = bridge_side
        self.cnn = efficientnet_v2_l(weights=None)
        stem = self.cnn.features[0][0]
        self.cnn.features[0][0] = nn.Conv2d(
            1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False
        )
        self.cnn.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, bridge_side * bridge_side))
        self.transformer = swin_v2_b(weights=None)
        patch = self.transformer.features[0][0]
        self.transformer.features[0][0] = nn.Conv2d(1, patch.out_channels, patch.kernel_size, patch.stride)
        self.transformer.head = nn.Identity()
        self.head = _ScoreHead(1024, output_range, norm=False)
        self.num_features = 1024

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_chans)
        vec = self.cnn(x)
        return self.transformer(vec.view(-1, 1, self.bridge_side, self.bridge_side))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


PRESETS: dict[str, dict[str, Any]] = {
    "tfkt_v2": {"cls": TFKTV2Net},
    # Default: fast enough for CPU scoring of whole series at full slice resolution.
    "hybrid_lite0": {"cls": SpatialHybridIQA, "backbone": "tf_efficientnet_lite0", "embed_dim": 128, "depth": 2},
    # The default less seven backbone blocks (48 % of its multiply-adds; benchmarks/block_drop.py chose them): 1.5x
    # its OpenVINO rate, for fine-tuning from the default's weights (--init pretrained). No released weights.
    "hybrid_lite0_fast": {
        "cls": SpatialHybridIQA,
        "backbone": "tf_efficientnet_lite0",
        "embed_dim": 128,
        "depth": 2,
        "drop_blocks": ("1.1", "2.1", "3.2", "4.1", "4.2", "5.2", "5.3"),
    },
    # A few-thousand-parameter variant for tests and smoke runs.
    "hybrid_tiny": {
        "cls": SpatialHybridIQA,
        "backbone": "test_efficientnet",
        "embed_dim": 32,
        "depth": 1,
        "num_heads": 2,
        "max_tokens_side": 8,
    },
}


def create_network(preset: str = "hybrid_lite0", **overrides: Any) -> nn.Module:
    """Build a network from a named preset; keyword overrides replace the preset's arguments."""
    if preset not in PRESETS:
        raise ValueError(f"unknown network preset {preset!r}; choose one of {sorted(PRESETS)}")
    kwargs = dict(PRESETS[preset])
    cls = kwargs.pop("cls")
    kwargs.update(overrides)
    return cls(**kwargs)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require gradients)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
