"""DenseNet (Huang et al., 2017): every layer of a dense block receives the concatenation of
all earlier feature maps of the block and adds ``growth_rate`` new channels.

``x: [batch, h, w, c] -> logits [batch, num_classes]``. Dense layer (DenseNet-B):
``BN -> ReLU -> 1x1 conv (bn_size * growth) -> BN -> ReLU -> 3x3 conv (growth)``;
transition (DenseNet-C): ``BN -> ReLU -> 1x1 conv (compression * c) -> 2x2 average pool``.
DenseNet-121 is ``block_sizes=(6, 12, 24, 16)``, growth 32, 64 stem channels: 7,978,856
parameters at 224x224 with 1000 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.conv import avg_pool, global_avg_pool, max_pool
from jaxdl.models.norms import make_norm
from jaxdl.models.registry import MODELS


class _NormReluConv(nnx.Module):
    def __init__(self, in_features, out_features, kernel, *, norm, rngs):
        self.norm = make_norm(norm, in_features)
        self.conv = nnx.Conv(in_features, out_features, (kernel, kernel), use_bias=False,
                             rngs=rngs)

    def __call__(self, x, *, train=False):
        return self.conv(jax.nn.relu(self.norm(x, train=train)))


class DenseLayer(nnx.Module):
    """``x: [batch, h, w, c] -> [batch, h, w, c + growth]``."""

    def __init__(self, in_features, growth, bn_size, *, norm, rngs):
        self.bottleneck = _NormReluConv(in_features, bn_size * growth, 1, norm=norm, rngs=rngs)
        self.conv = _NormReluConv(bn_size * growth, growth, 3, norm=norm, rngs=rngs)

    def __call__(self, x, *, train=False):
        new = self.conv(self.bottleneck(x, train=train), train=train)
        return jnp.concatenate([x, new], axis=-1)


class DenseNet(nnx.Module):
    """Stem, dense blocks joined by transitions, final BN-ReLU, pooling, linear head."""

    def __init__(self, in_channels: int, num_classes: int, *, block_sizes: Sequence[int],
                 growth_rate: int, stem_features: int, bn_size: int = 4,
                 compression: float = 0.5, small_input: bool = False, norm: str = "batch",
                 rngs: nnx.Rngs):
        kernel, stride = (3, 1) if small_input else (7, 2)
        self.stem = nnx.Conv(in_channels, stem_features, (kernel, kernel), strides=stride,
                             use_bias=False, rngs=rngs)
        self.stem_norm = make_norm(norm, stem_features)
        self.stem_pool = not small_input
        c, blocks, transitions = stem_features, [], []
        for i, size in enumerate(block_sizes):
            layers = []
            for _ in range(size):
                layers.append(DenseLayer(c, growth_rate, bn_size, norm=norm, rngs=rngs))
                c += growth_rate
            blocks.append(nnx.List(layers))
            if i < len(block_sizes) - 1:
                out = int(c * compression)
                transitions.append(_NormReluConv(c, out, 1, norm=norm, rngs=rngs))
                c = out
        self.blocks, self.transitions = nnx.List(blocks), nnx.List(transitions)
        self.final_norm = make_norm(norm, c)
        self.head = nnx.Linear(c, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        h = jax.nn.relu(self.stem_norm(self.stem(x), train=train))
        if self.stem_pool:
            h = max_pool(h, 3, 2, "SAME")
        for i, block in enumerate(self.blocks):
            for layer in block:
                h = layer(h, train=train)
            if i < len(self.transitions):
                h = avg_pool(self.transitions[i](h, train=train), 2)
        h = jax.nn.relu(self.final_norm(h, train=train))
        return self.head(global_avg_pool(h))


@MODELS.register("densenet")
def make_densenet(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                  block_sizes: Sequence[int] = (6, 12, 24, 16), growth_rate: int = 32,
                  stem_features: int = 64, bn_size: int = 4, compression: float = 0.5,
                  small_input: bool = True, norm: str = "batch") -> DenseNet:
    if len(input_shape) != 3:
        raise ValueError(f"model 'densenet' expects images [height, width, channels]; got "
                         f"input_shape {tuple(input_shape)}.")
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"model.compression={compression}: expected 0 < value <= 1.")
    return DenseNet(input_shape[-1], num_classes, block_sizes=tuple(block_sizes),
                    growth_rate=growth_rate, stem_features=stem_features, bn_size=bn_size,
                    compression=compression, small_input=small_input, norm=norm, rngs=rngs)
