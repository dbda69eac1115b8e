"""VGG-style networks (Simonyan & Zisserman, 2015): stacks of 3x3 convolutions separated by
2x2 max-pools, then a dense classifier.

``x: [batch, h, w, c] -> logits [batch, num_classes]``. ``stages`` lists the channels of
each convolution per stage, e.g. VGG-16 is ``((64, 64), (128, 128), (256,) * 3,
(512,) * 3, (512,) * 3)`` with ``hidden=(4096, 4096)``: 138,357,544 parameters at 224x224
with 1000 classes. ``norm="batch"`` adds BatchNorm after each convolution (VGG-BN).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxdl.models.conv import ConvNorm, max_pool
from jaxdl.models.dropout import Dropout
from jaxdl.models.registry import MODELS

VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(nnx.Module):
    """See the module docstring; the classifier flattens the last feature map."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, *,
                 stages: Sequence[Sequence[int]], hidden: Sequence[int], norm: str = "none",
                 dropout: float = 0.5, rngs: nnx.Rngs):
        height, width, c = input_shape
        convs = []
        for stage in stages:
            convs.append(nnx.List([]))
            for f in stage:
                convs[-1].append(ConvNorm(c, f, 3, norm=norm, rngs=rngs))
                c = f
            height, width = height // 2, width // 2
        if min(height, width) < 1:
            raise ValueError(f"model 'vgg': {len(stages)} stages halve input_shape "
                             f"{tuple(input_shape)} below 1x1; use fewer model.stages.")
        self.stages = nnx.List(convs)
        sizes = (height * width * c, *hidden)
        self.dense = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
        self.dropout = Dropout(dropout)
        self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """The last convolution's output, before its pool (for Grad-CAM)."""
        h = x
        for i, stage in enumerate(self.stages):
            if i:
                h = max_pool(h, 2)
            for conv in stage:
                h = conv(h, train=train)
        return h

    def classify(self, features: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        h = max_pool(features, 2).reshape(features.shape[0], -1)
        for layer in self.dense:
            h = self.dropout(jax.nn.relu(layer(h)), train=train, rngs=rngs)
        return self.head(h)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        return self.classify(self.features(x, train=train), train=train, rngs=rngs)


@MODELS.register("vgg")
def make_vgg(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
             stages: Sequence[Sequence[int]] = ((32, 32), (64, 64)),
             hidden: Sequence[int] = (128,), norm: str = "none",
             dropout: float = 0.5) -> VGG:
    if len(input_shape) != 3:
        raise ValueError(f"model 'vgg' expects images [height, width, channels]; got "
                         f"input_shape {tuple(input_shape)}.")
    return VGG(tuple(input_shape), num_classes, stages=tuple(map(tuple, stages)),
               hidden=tuple(hidden), norm=norm, dropout=dropout, rngs=rngs)
