"""LeNet-5 (LeCun et al., 1998), in its common modern form.

``x: [batch, 28, 28, 1]`` (or any image at least 28x28 after padding) ``-> logits``:
conv 5x5 (6, ``SAME``: the 28x28 MNIST digit stands in for the paper's padded 32x32 input)
-> 2x2 average pool -> conv 5x5 (16, ``VALID``) -> 2x2 average pool -> dense 120 -> dense 84
-> linear head. ``tanh`` as in the paper; 61,706 parameters for 28x28x1 and 10 classes.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxdl.models.conv import avg_pool, max_pool
from jaxdl.models.dropout import Dropout
from jaxdl.models.mlp import activation_fn
from jaxdl.models.registry import MODELS


class LeNet5(nnx.Module):
    """``x: [batch, h, w, c] -> logits [batch, num_classes]``."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, *,
                 activation: str = "tanh", pool: str = "avg", dropout: float = 0.0,
                 rngs: nnx.Rngs):
        height, width, channels = input_shape
        if min(height, width) < 12:
            raise ValueError(f"model 'lenet5' needs images of at least 12x12; got input_shape "
                             f"{tuple(input_shape)}.")
        if pool not in ("avg", "max"):
            raise ValueError(f"model.pool={pool!r}: expected 'avg' or 'max'.")
        self.activation = activation_fn(activation)
        self.pool = avg_pool if pool == "avg" else max_pool
        self.conv1 = nnx.Conv(channels, 6, (5, 5), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(6, 16, (5, 5), padding="VALID", rngs=rngs)
        h, w = (height // 2 - 4) // 2, (width // 2 - 4) // 2
        self.fc1 = nnx.Linear(h * w * 16, 120, rngs=rngs)
        self.fc2 = nnx.Linear(120, 84, rngs=rngs)
        self.dropout = Dropout(dropout)
        self.head = nnx.Linear(84, num_classes, rngs=rngs)

    def features(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """The last convolutional feature map ``[batch, h', w', 16]`` (for Grad-CAM)."""
        del train, rngs
        h = self.pool(self.activation(self.conv1(x)), 2)
        return self.activation(self.conv2(h))

    def classify(self, features: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        h = self.pool(features, 2).reshape(features.shape[0], -1)
        h = self.activation(self.fc2(self.activation(self.fc1(h))))
        return self.head(self.dropout(h, train=train, rngs=rngs))

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        return self.classify(self.features(x), train=train, rngs=rngs)


@MODELS.register("lenet5")
def make_lenet5(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                activation: str = "tanh", pool: str = "avg", dropout: float = 0.0) -> LeNet5:
    if len(input_shape) != 3:
        raise ValueError(f"model 'lenet5' expects images [height, width, channels]; got "
                         f"input_shape {tuple(input_shape)}.")
    return LeNet5(tuple(input_shape), num_classes, activation=activation, pool=pool,
                  dropout=dropout, rngs=rngs)
