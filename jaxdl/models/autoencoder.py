"""Deep autoencoder (Hinton & Salakhutdinov, 2006), the classic curvature-method benchmark
(Martens, 2010; Martens & Grosse, 2015).

``x: [batch, *input_shape] -> logits: [batch, *input_shape]``: dense encoder down to a linear
code, a mirrored dense decoder, linear output logits (read through a sigmoid by the
``sigmoid_reconstruction`` objective). Dense layers are K-FAC curvature layers; outside a
curvature scope they are plain ``nnx.Linear``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.init import get_initializer
from jaxdl.models.mlp import activation_fn
from jaxdl.models.registry import MODELS
from jaxdl.optim.kfac import CurvatureLinear, name_curvature_layers


class Autoencoder(nnx.Module):
    """Encoder ``in -> encoder[0] -> ... -> encoder[-1]`` (the last one linear: the code),
    then decoder ``reversed(encoder[:-1]) -> in`` with a linear output."""

    def __init__(self, input_shape: Sequence[int], encoder: Sequence[int] = (1000, 500, 250, 30),
                 activation: str = "tanh", *, kernel_init: str = "glorot_normal",
                 rngs: nnx.Rngs):
        if not encoder or any(int(d) <= 0 for d in encoder):
            raise ValueError(f"model.encoder={encoder!r}: expected a non-empty tuple of "
                             "positive layer widths, e.g. (1000, 500, 250, 30).")
        self.input_shape = tuple(input_shape)
        self.activation = activation_fn(activation)
        init = get_initializer(kernel_init, argument="model.kernel_init")
        d_in = math.prod(self.input_shape)
        sizes = (d_in, *encoder, *reversed(encoder[:-1]), d_in)
        self.layers = nnx.List([CurvatureLinear(a, b, kernel_init=init, rngs=rngs)
                                for a, b in zip(sizes[:-1], sizes[1:])])
        self.code_layer = len(encoder) - 1
        name_curvature_layers(self)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        del train, rngs
        h = jnp.reshape(x, (x.shape[0], -1))
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i not in (self.code_layer, last):
                h = self.activation(h)
        return jnp.reshape(h, (x.shape[0], *self.input_shape))


@MODELS.register("autoencoder")
def make_autoencoder(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                     encoder: Sequence[int] = (1000, 500, 250, 30), activation: str = "tanh",
                     kernel_init: str = "glorot_normal") -> Autoencoder:
    del num_classes  # reconstructs its input
    return Autoencoder(input_shape, tuple(encoder), activation, kernel_init=kernel_init,
                       rngs=rngs)
