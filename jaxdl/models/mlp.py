"""Multi-layer perceptron: flatten, then Dense -> activation blocks, then a linear head.

Initialization is configurable by name (``kernel_init``, one of ``jaxdl.init.INITIALIZERS``)
and a constant bias (``bias_init``); the defaults (LeCun normal kernels, zero biases) are
``nnx.Linear``'s own. The dense layers are K-FAC curvature layers
(:class:`jaxdl.optim.kfac.CurvatureLinear`): plain ``nnx.Linear`` outside a curvature scope,
so any optimizer, K-FAC included, trains this model.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.init import get_initializer
from jaxdl.models.registry import ACTIVATIONS, MODELS
from jaxdl.optim.kfac import CurvatureLinear, name_curvature_layers


def activation_fn(name: str):
    """``jax.nn`` activation by name; ValueError naming ``activation`` otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation={name!r}: expected one of {list(ACTIVATIONS)}.")
    return getattr(jax.nn, name)


class MLP(nnx.Module):
    """``x: [batch, *input_shape] -> logits: [batch, num_classes]``.

    ``kernel_init`` names a kernel initializer (e.g. "he_normal" for ReLU, He et al., 2015;
    "glorot_normal" for tanh, Glorot & Bengio, 2010); ``bias_init`` is the constant every
    bias starts at (e.g. 0.01 to keep ReLU units active).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        *,
        rngs: nnx.Rngs,
        kernel_init: str = "lecun_normal",
        bias_init: float = 0.0,
    ):
        self.activation = activation_fn(activation)
        if isinstance(bias_init, bool) or not isinstance(bias_init, (int, float)):
            raise ValueError(f"model.bias_init={bias_init!r}: expected a number, the constant "
                             "every bias starts at (e.g. 0.0 or 0.01).")
        inits = {
            "kernel_init": get_initializer(kernel_init, argument="model.kernel_init"),
            "bias_init": jax.nn.initializers.constant(bias_init),
        }
        sizes = (in_features, *hidden)
        self.layers = nnx.List(
            [CurvatureLinear(a, b, rngs=rngs, **inits) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.head = CurvatureLinear(sizes[-1], num_classes, rngs=rngs, **inits)
        name_curvature_layers(self)

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
    kernel_init: str = "lecun_normal",
    bias_init: float = 0.0,
) -> MLP:
    in_features = 1
    for d in input_shape:
        in_features *= d
    return MLP(in_features, num_classes, tuple(hidden), activation, rngs=rngs,
               kernel_init=kernel_init, bias_init=bias_init)
