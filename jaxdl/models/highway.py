"""Highway networks (Srivastava et al., 2015): gated skip connections for deep MLPs.

Each layer computes ``y = T(x) * H(x) + (1 - T(x)) * x`` with transform gate
``T(x) = sigmoid(W_T x + b_T)``. ``b_T`` starts negative (-2 here) so that at
initialization the layers mostly carry their input, which makes very deep stacks trainable.
``x: [batch, ...] -> logits [batch, num_classes]`` (inputs are flattened).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.mlp import activation_fn
from jaxdl.models.registry import MODELS


class HighwayLayer(nnx.Module):
    """``x: [batch, d] -> [batch, d]``; see the module docstring."""

    def __init__(self, features: int, *, gate_bias: float = -2.0, activation: str = "relu",
                 rngs: nnx.Rngs):
        self.transform = nnx.Linear(features, features, rngs=rngs)
        self.gate = nnx.Linear(features, features, rngs=rngs,
                               bias_init=nnx.initializers.constant(gate_bias))
        self.activation = activation_fn(activation)

    def __call__(self, x: jax.Array) -> jax.Array:
        t = jax.nn.sigmoid(self.gate(x))
        return t * self.activation(self.transform(x)) + (1.0 - t) * x


class HighwayNet(nnx.Module):
    """Linear projection to ``width``, ``depth`` highway layers, linear head."""

    def __init__(self, in_features: int, num_classes: int, *, width: int, depth: int,
                 gate_bias: float, activation: str, rngs: nnx.Rngs):
        self.project = nnx.Linear(in_features, width, rngs=rngs)
        self.layers = nnx.List([HighwayLayer(width, gate_bias=gate_bias, activation=activation,
                                             rngs=rngs) for _ in range(depth)])
        self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        del train, rngs
        h = self.project(jnp.reshape(x, (x.shape[0], -1)))
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


@MODELS.register("highway")
def make_highway(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                 width: int = 64, depth: int = 10, gate_bias: float = -2.0,
                 activation: str = "relu") -> HighwayNet:
    if depth < 1 or width < 1:
        raise ValueError(f"model 'highway': depth={depth} and width={width} must be >= 1.")
    in_features = 1
    for d in input_shape:
        in_features *= d
    return HighwayNet(in_features, num_classes, width=width, depth=depth, gate_bias=gate_bias,
                      activation=activation, rngs=rngs)
