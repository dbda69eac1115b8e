"""MobileNets: v1 (Howard et al., 2017), depthwise-separable convolutions; v2 (Sandler et
al., 2018), inverted residual blocks with linear bottlenecks.

``x: [batch, height, width, channels] -> logits [batch, num_classes]``. ``width_multiplier``
scales every layer's channels (rounded to a multiple of 8 for v2, as in the paper's code);
``small_input=True`` makes the stem stride 1 for 28x28 or 32x32 images.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxdl.models.conv import ConvNorm, global_avg_pool
from jaxdl.models.dropout import Dropout
from jaxdl.models.registry import MODELS

# v1 (Howard et al., Table 1): (pointwise output channels, depthwise stride)
V1_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# v2 (Sandler et al., Table 2): (expansion t, channels c, repeats n, first stride s)
V2_LAYERS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class MobileNetV1(nnx.Module):
    """Stem 3x3/2 conv, then 13 (depthwise 3x3 -> BN -> ReLU, pointwise 1x1 -> BN -> ReLU)."""

    def __init__(self, in_channels: int, num_classes: int, *, width_multiplier: float = 1.0,
                 small_input: bool = False, dropout: float = 0.0, rngs: nnx.Rngs):
        c = int(32 * width_multiplier)
        self.stem = ConvNorm(in_channels, c, 3, strides=1 if small_input else 2, rngs=rngs)
        layers = []
        for out, stride in V1_LAYERS:
            out = int(out * width_multiplier)
            layers.append(ConvNorm(c, c, 3, strides=stride, groups=c, rngs=rngs))
            layers.append(ConvNorm(c, out, 1, rngs=rngs))
            c = out
        self.layers = nnx.List(layers)
        self.dropout = Dropout(dropout)
        self.head = nnx.Linear(c, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        h = self.stem(x, train=train)
        for layer in self.layers:
            h = layer(h, train=train)
        return self.head(self.dropout(global_avg_pool(h), train=train, rngs=rngs))


class InvertedResidual(nnx.Module):
    """``1x1 expand (x t) -> ReLU6 -> 3x3 depthwise -> ReLU6 -> 1x1 project (linear)``, with
    the identity added when the stride is 1 and the channel count is unchanged."""

    def __init__(self, in_features: int, out_features: int, stride: int, expansion: int, *,
                 rngs: nnx.Rngs):
        hidden = in_features * expansion
        self.expand = (ConvNorm(in_features, hidden, 1, activation="relu6", rngs=rngs)
                       if expansion != 1 else None)
        self.depthwise = ConvNorm(hidden, hidden, 3, strides=stride, groups=hidden,
                                  activation="relu6", rngs=rngs)
        self.project = ConvNorm(hidden, out_features, 1, activation=None, rngs=rngs)
        self.residual = stride == 1 and in_features == out_features

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        h = self.expand(x, train=train) if self.expand is not None else x
        h = self.project(self.depthwise(h, train=train), train=train)
        return x + h if self.residual else h


class MobileNetV2(nnx.Module):
    """Stem 3x3/2 conv (32), the 17 inverted residual blocks of ``V2_LAYERS``, a 1x1 conv to
    1280 channels, global average pooling, dropout and a linear head."""

    def __init__(self, in_channels: int, num_classes: int, *, width_multiplier: float = 1.0,
                 small_input: bool = False, dropout: float = 0.2,
                 layers: tuple = V2_LAYERS, rngs: nnx.Rngs):
        c = make_divisible(32 * width_multiplier)
        self.stem = ConvNorm(in_channels, c, 3, strides=1 if small_input else 2,
                             activation="relu6", rngs=rngs)
        blocks = []
        for t, channels, repeats, stride in layers:
            out = make_divisible(channels * width_multiplier)
            for i in range(repeats):
                blocks.append(InvertedResidual(c, out, stride if i == 0 else 1, t, rngs=rngs))
                c = out
        self.blocks = nnx.List(blocks)
        last = make_divisible(1280 * max(1.0, width_multiplier))
        self.last = ConvNorm(c, last, 1, activation="relu6", rngs=rngs)
        self.dropout = Dropout(dropout)
        self.head = nnx.Linear(last, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        h = self.stem(x, train=train)
        for block in self.blocks:
            h = block(h, train=train)
        h = global_avg_pool(self.last(h, train=train))
        return self.head(self.dropout(h, train=train, rngs=rngs))


def _check_images(name, input_shape):
    if len(input_shape) != 3:
        raise ValueError(f"model {name!r} expects images [height, width, channels]; got "
                         f"input_shape {tuple(input_shape)}.")


@MODELS.register("mobilenet_v1")
def make_mobilenet_v1(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                      width_multiplier: float = 1.0, small_input: bool = True,
                      dropout: float = 0.0) -> MobileNetV1:
    _check_images("mobilenet_v1", input_shape)
    return MobileNetV1(input_shape[-1], num_classes, width_multiplier=width_multiplier,
                       small_input=small_input, dropout=dropout, rngs=rngs)


@MODELS.register("mobilenet_v2")
def make_mobilenet_v2(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                      width_multiplier: float = 1.0, small_input: bool = True,
                      dropout: float = 0.2, layers: tuple | None = None) -> MobileNetV2:
    """``layers``: ``(t, c, n, s)`` rows replacing the paper's table (for small data)."""
    _check_images("mobilenet_v2", input_shape)
    layers = V2_LAYERS if layers is None else tuple(tuple(row) for row in layers)
    if any(len(row) != 4 for row in layers):
        raise ValueError(f"model.layers={layers!r}: expected rows (expansion, channels, "
                         "repeats, stride).")
    return MobileNetV2(input_shape[-1], num_classes, width_multiplier=width_multiplier,
                       small_input=small_input, dropout=dropout, layers=layers, rngs=rngs)
