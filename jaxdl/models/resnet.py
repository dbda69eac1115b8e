"""Residual networks (He et al., 2016): basic and bottleneck blocks, the pre-activation
variant (He et al., 2016, "Identity mappings"), 18/34/50/101/152 configurations and
stochastic depth (Huang et al., 2016).

``x: [batch, height, width, channels] -> logits [batch, num_classes]``. The ``imagenet``
stem is a 7x7/2 convolution and a 3x3/2 max-pool; the ``cifar`` stem a single 3x3/1
convolution for small images (CIFAR, MNIST). Each stage halves the resolution (except the
first) and doubles the width; a 1x1 projection shortcut is used wherever the shape changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxdl.models.conv import ConvNorm, global_avg_pool, max_pool
from jaxdl.models.dropout import drop_path
from jaxdl.models.norms import make_norm
from jaxdl.models.registry import MODELS

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
          152: ("bottleneck", (3, 8, 36, 3))}


class BasicBlock(nnx.Module):
    """Two 3x3 convolutions; ``expansion`` 1. Post-activation: ``relu(x + F(x))``;
    pre-activation: ``x + F(x)`` with ``F = conv(relu(bn(conv(relu(bn(x))))))``."""

    expansion = 1

    def __init__(self, in_features, features, strides, *, norm, preact, drop_rate, rngs):
        out = features * self.expansion
        if preact:
            self.pre = make_norm(norm, in_features)
            self.conv1 = ConvNorm(in_features, features, 3, strides=strides, norm=norm,
                                  rngs=rngs)
            self.conv2 = nnx.Conv(features, out, (3, 3), use_bias=False, rngs=rngs)
        else:
            self.pre = None
            self.conv1 = ConvNorm(in_features, features, 3, strides=strides, norm=norm,
                                  rngs=rngs)
            self.conv2 = ConvNorm(features, out, 3, norm=norm, activation=None,
                                  zero_init_scale=True, rngs=rngs)
        self.shortcut = _shortcut(in_features, out, strides, norm, preact, rngs)
        self.drop_rate = drop_rate

    def branch(self, h, train):
        return self.conv2(self.conv1(h, train=train), **_train_kw(self.conv2, train))

    def __call__(self, x, *, train=False, rngs=None):
        return _residual(self, x, train, rngs)


class Bottleneck(BasicBlock):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand (x4), the ResNet-50+ block."""

    expansion = 4

    def __init__(self, in_features, features, strides, *, norm, preact, drop_rate, rngs):
        out = features * self.expansion
        self.pre = make_norm(norm, in_features) if preact else None
        self.conv1 = ConvNorm(in_features, features, 1, norm=norm, rngs=rngs)
        self.conv2 = ConvNorm(features, features, 3, strides=strides, norm=norm, rngs=rngs)
        if preact:
            self.conv3 = nnx.Conv(features, out, (1, 1), use_bias=False, rngs=rngs)
        else:
            self.conv3 = ConvNorm(features, out, 1, norm=norm, activation=None,
                                  zero_init_scale=True, rngs=rngs)
        self.shortcut = _shortcut(in_features, out, strides, norm, preact, rngs)
        self.drop_rate = drop_rate

    def branch(self, h, train):
        h = self.conv2(self.conv1(h, train=train), train=train)
        return self.conv3(h, **_train_kw(self.conv3, train))


def _train_kw(layer, train):
    return {} if isinstance(layer, nnx.Conv) else {"train": train}


def _shortcut(in_features, out, strides, norm, preact, rngs):
    if in_features == out and strides == 1:
        return None
    if preact:  # the pre-activation path already normalizes the input
        return nnx.Conv(in_features, out, (1, 1), strides=strides, use_bias=False, rngs=rngs)
    return ConvNorm(in_features, out, 1, strides=strides, norm=norm, activation=None,
                    rngs=rngs)


def _residual(block, x, train, rngs):
    if block.pre is not None:  # pre-activation: both paths see relu(bn(x)) when projecting
        h = jax.nn.relu(block.pre(x, train=train))
        skip = x if block.shortcut is None else block.shortcut(h)
        return skip + drop_path(block.branch(h, train), block.drop_rate, train=train,
                                rngs=rngs)
    skip = x if block.shortcut is None else block.shortcut(x, train=train)
    branch = drop_path(block.branch(x, train), block.drop_rate, train=train, rngs=rngs)
    return jax.nn.relu(skip + branch)


class ResNet(nnx.Module):
    """``x: [batch, h, w, c] -> logits [batch, num_classes]``; see the module docstring."""

    def __init__(self, in_channels: int, num_classes: int, *, block: str,
                 stage_sizes: Sequence[int], width: int = 64, stem: str = "imagenet",
                 norm: str = "batch", preact: bool = False, drop_path_rate: float = 0.0,
                 rngs: nnx.Rngs):
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"model.block={block!r}: expected 'basic' or 'bottleneck'.")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"model.stem={stem!r}: expected 'imagenet' or 'cifar'.")
        block_cls = BasicBlock if block == "basic" else Bottleneck
        kernel = 7 if stem == "imagenet" else 3
        stride = 2 if stem == "imagenet" else 1
        if preact:  # the stem's BN+ReLU is done by the first block's pre-activation
            self.stem = nnx.Conv(in_channels, width, (kernel, kernel), strides=stride,
                                 use_bias=False, rngs=rngs)
        else:
            self.stem = ConvNorm(in_channels, width, kernel, strides=stride, norm=norm,
                                 rngs=rngs)
        self.stem_pool = stem == "imagenet"
        total = sum(stage_sizes)
        blocks, channels, index = [], width, 0
        for stage, size in enumerate(stage_sizes):
            features = width * 2 ** stage
            for i in range(size):
                strides = 2 if stage > 0 and i == 0 else 1
                rate = drop_path_rate * index / max(total - 1, 1)  # linear decay rule
                blocks.append(block_cls(channels, features, strides, norm=norm, preact=preact,
                                        drop_rate=rate, rngs=rngs))
                channels, index = features * block_cls.expansion, index + 1
        self.blocks = nnx.List(blocks)
        self.final_norm = make_norm(norm, channels) if preact else None
        self.head = nnx.Linear(channels, num_classes, rngs=rngs)
        self.num_features = channels

    def features(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """The last feature map ``[batch, h', w', num_features]`` (for Grad-CAM)."""
        h = self.stem(x, **_train_kw(self.stem, train))
        if self.stem_pool:
            h = max_pool(h, 3, 2, "SAME")
        for block in self.blocks:
            h = block(h, train=train, rngs=rngs)
        if self.final_norm is not None:
            h = jax.nn.relu(self.final_norm(h, train=train))
        return h

    def classify(self, features: jax.Array) -> jax.Array:
        return self.head(global_avg_pool(features))

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        return self.classify(self.features(x, train=train, rngs=rngs))


@MODELS.register("resnet")
def make_resnet(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                depth: int = 18, stage_sizes: Sequence[int] | None = None,
                block: str | None = None, width: int = 64, stem: str = "cifar",
                norm: str = "batch", preact: bool = False,
                drop_path_rate: float = 0.0) -> ResNet:
    """``depth`` picks the block and stage sizes of He et al.'s Table 1 (18/34/50/101/152);
    ``stage_sizes``/``block`` override them (e.g. ``(1, 1)`` for a tiny network)."""
    if len(input_shape) != 3:
        raise ValueError(f"model 'resnet' expects images [height, width, channels]; got "
                         f"input_shape {tuple(input_shape)}.")
    if stage_sizes is None or block is None:
        if depth not in DEPTHS:
            raise ValueError(f"model.depth={depth}: expected one of {sorted(DEPTHS)} (or set "
                             "model.stage_sizes and model.block).")
        block = block or DEPTHS[depth][0]
        stage_sizes = stage_sizes or DEPTHS[depth][1]
    return ResNet(input_shape[-1], num_classes, block=block, stage_sizes=tuple(stage_sizes),
                  width=width, stem=stem, norm=norm, preact=preact,
                  drop_path_rate=drop_path_rate, rngs=rngs)


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "make_resnet"]
