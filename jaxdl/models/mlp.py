"""Multi-layer perceptron: flatten, then Dense -> activation blocks, then a linear head."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.registry import ACTIVATIONS, MODELS


def activation_fn(name: str):
    """``jax.nn`` activation by name; ValueError naming ``activation`` otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation={name!r}: expected one of {list(ACTIVATIONS)}.")
    return getattr(jax.nn, name)


class MLP(nnx.Module):
    """``x: [batch, *input_shape] -> logits: [batch, num_classes]``."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        *,
        rngs: nnx.Rngs,
    ):
        self.activation = activation_fn(activation)
        sizes = (in_features, *hidden)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        del train, rngs  # deterministic, no batch statistics
        h = jnp.reshape(x, (x.shape[0], -1))
        for layer in self.layers:
            h = self.activation(layer(h))
        return self.head(h)


@MODELS.register("mlp")
def make_mlp(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    rngs: nnx.Rngs,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
) -> MLP:
    in_features = 1
    for d in input_shape:
        in_features *= d
    return MLP(in_features, num_classes, tuple(hidden), activation, rngs=rngs)
