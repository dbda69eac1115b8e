"""EfficientNet (Tan & Le, 2019): MBConv blocks with squeeze-and-excitation (Hu et al., 2018)
and compound scaling of depth, width and resolution.

``x: [batch, height, width, channels] -> logits [batch, num_classes]``. B0 is the base
network of Table 1; :func:`compound_scaling` gives the multipliers for ``phi`` (depth
``1.2^phi``, width ``1.1^phi``, resolution ``1.15^phi``, chosen so FLOPs grow ~``2^phi``).
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from jaxdl.models.conv import ConvNorm, global_avg_pool
from jaxdl.models.dropout import Dropout, drop_path
from jaxdl.models.mobilenet import make_divisible
from jaxdl.models.registry import MODELS

# B0 (Table 1): (expansion, kernel, first stride, output channels, repeats)
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def compound_scaling(phi: float, alpha: float = 1.2, beta: float = 1.1,
                     gamma: float = 1.15, base_resolution: int = 224) -> dict[str, float]:
    """Depth and width multipliers and input resolution for compound coefficient ``phi``."""
    return {"depth": alpha ** phi, "width": beta ** phi,
            "resolution": int(round(base_resolution * gamma ** phi))}


class SqueezeExcite(nnx.Module):
    """``x: [batch, h, w, c] -> x * sigmoid(W2 silu(W1 mean_hw(x)))``, channel gating."""

    def __init__(self, features: int, squeezed: int, *, rngs: nnx.Rngs):
        self.reduce = nnx.Conv(features, squeezed, (1, 1), rngs=rngs)
        self.expand = nnx.Conv(squeezed, features, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        s = x.mean((1, 2), keepdims=True)
        return x * jax.nn.sigmoid(self.expand(jax.nn.silu(self.reduce(s))))


class MBConv(nnx.Module):
    """Mobile inverted bottleneck: 1x1 expand -> kxk depthwise -> SE -> 1x1 project, with an
    identity shortcut and stochastic depth when shapes allow."""

    def __init__(self, in_features: int, out_features: int, kernel: int, stride: int,
                 expansion: int, *, se_ratio: float = 0.25, drop_rate: float = 0.0,
                 rngs: nnx.Rngs):
        hidden = in_features * expansion
        self.expand = (ConvNorm(in_features, hidden, 1, activation="silu", rngs=rngs)
                       if expansion != 1 else None)
        self.depthwise = ConvNorm(hidden, hidden, kernel, strides=stride, groups=hidden,
                                  activation="silu", rngs=rngs)
        self.se = SqueezeExcite(hidden, max(1, int(in_features * se_ratio)), rngs=rngs)
        self.project = ConvNorm(hidden, out_features, 1, activation=None, rngs=rngs)
        self.residual = stride == 1 and in_features == out_features
        self.drop_rate = drop_rate

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        h = self.expand(x, train=train) if self.expand is not None else x
        h = self.se(self.depthwise(h, train=train))
        h = self.project(h, train=train)
        if not self.residual:
            return h
        return x + drop_path(h, self.drop_rate, train=train, rngs=rngs)


class EfficientNet(nnx.Module):
    """Stem 3x3/2 (32 ch) -> MBConv stages of ``B0_STAGES`` scaled by ``width``/``depth`` ->
    1x1 conv (1280 ch) -> global average pool -> dropout -> linear head."""

    def __init__(self, in_channels: int, num_classes: int, *, width: float = 1.0,
                 depth: float = 1.0, dropout: float = 0.2, drop_path_rate: float = 0.2,
                 small_input: bool = False, stages: tuple = B0_STAGES, rngs: nnx.Rngs):
        c = make_divisible(32 * width)
        self.stem = ConvNorm(in_channels, c, 3, strides=1 if small_input else 2,
                             activation="silu", rngs=rngs)
        repeats = [int(math.ceil(n * depth)) for *_, n in stages]
        total, index, blocks = sum(repeats), 0, []
        for (t, k, s, channels, _), n in zip(stages, repeats):
            out = make_divisible(channels * width)
            for i in range(n):
                blocks.append(MBConv(c, out, k, s if i == 0 else 1, t,
                                     drop_rate=drop_path_rate * index / total, rngs=rngs))
                c, index = out, index + 1
        self.blocks = nnx.List(blocks)
        last = make_divisible(1280 * width)
        self.last = ConvNorm(c, last, 1, activation="silu", rngs=rngs)
        self.dropout = Dropout(dropout)
        self.head = nnx.Linear(last, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        h = self.stem(x, train=train)
        for block in self.blocks:
            h = block(h, train=train, rngs=rngs)
        h = global_avg_pool(self.last(h, train=train))
        return self.head(self.dropout(h, train=train, rngs=rngs))


@MODELS.register("efficientnet")
def make_efficientnet(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                      phi: float = 0.0, width: float | None = None, depth: float | None = None,
                      dropout: float = 0.2, drop_path_rate: float = 0.2,
                      small_input: bool = True, stages: tuple | None = None) -> EfficientNet:
    """``phi`` sets width and depth by compound scaling (0 = B0); ``width``/``depth``
    override them. The input resolution is the data's: compare it with
    ``compound_scaling(phi)["resolution"]``. ``stages``: ``(expansion, kernel, stride,
    channels, repeats)`` rows replacing B0's table (for small data)."""
    if len(input_shape) != 3:
        raise ValueError(f"model 'efficientnet' expects images [height, width, channels]; "
                         f"got input_shape {tuple(input_shape)}.")
    stages = B0_STAGES if stages is None else tuple(tuple(row) for row in stages)
    if any(len(row) != 5 for row in stages):
        raise ValueError(f"model.stages={stages!r}: expected rows (expansion, kernel, stride, "
                         "channels, repeats).")
    scale = compound_scaling(phi)
    return EfficientNet(input_shape[-1], num_classes,
                        width=scale["width"] if width is None else width,
                        depth=scale["depth"] if depth is None else depth, dropout=dropout,
                        drop_path_rate=drop_path_rate, small_input=small_input, stages=stages,
                        rngs=rngs)
