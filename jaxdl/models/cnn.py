"""A small convolutional classifier (LeCun et al., 1998 style).

Blocks of 3x3 ``SAME`` convolution -> activation -> 2x2 max-pool (pooling only while the
spatial size is at least 2), then Dense -> activation -> linear head. Convolutions and dense
layers are K-FAC curvature layers (:class:`jaxdl.optim.kfac.CurvatureConv`, KFC;
:class:`~jaxdl.optim.kfac.CurvatureLinear`), plain NNX layers outside a curvature scope.

``fast_conv=True`` gives the convolutions :mod:`jaxdl.models.conv_fast`'s weight gradient,
which pays off only under XLA's YNNPACK convolutions. The fastest CPU step of this model
found here (``experiments.bench.cnn``, 28x28x1, batch 128, 2 cores) combines three trainer
options: ``model.fast_conv=True``, ``xla_cpu_convolutions="ynnpack"`` and
``microbatches=4, microbatch_mode="unroll"`` (YNNPACK runs each convolution on one core;
four independent passes keep both busy): 0.92-0.94x PyTorch eager against 1.00-1.03x for
the default step (Eigen convolutions, YNNPACK matmuls and reductions) in the same runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.conv import max_pool
from jaxdl.models.mlp import activation_fn
from jaxdl.models.registry import MODELS
from jaxdl.optim.kfac import CurvatureConv, CurvatureLinear, name_curvature_layers


class SmallCNN(nnx.Module):
    """``x: [batch, height, width, channels] -> logits: [batch, num_classes]``."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        features: Sequence[int] = (32, 64),
        hidden: int = 128,
        kernel_size: int = 3,
        activation: str = "relu",
        *,
        rngs: nnx.Rngs,
        fast_conv: bool = False,
    ):
        if len(input_shape) != 3:
            raise ValueError(
                f"model 'cnn' expects images [height, width, channels]; got input_shape "
                f"{tuple(input_shape)}."
            )
        height, width, channels = input_shape
        self.activation = activation_fn(activation)
        convs, pools = [], []
        for f in features:
            convs.append(CurvatureConv(channels, f, (kernel_size, kernel_size), rngs=rngs,
                                       fast_conv=fast_conv))
            pool = height >= 2 and width >= 2
            pools.append(pool)
            if pool:
                height, width = height // 2, width // 2
            channels = f
        self.convs = nnx.List(convs)
        self.pools = tuple(pools)
        self.dense = CurvatureLinear(height * width * channels, hidden, rngs=rngs)
        self.head = CurvatureLinear(hidden, num_classes, rngs=rngs)
        name_curvature_layers(self)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        del train, rngs
        h = x
        for conv, pool in zip(self.convs, self.pools):
            h = self.activation(conv(h))
            if pool:
                h = max_pool(h, 2)  # reshape-based: fast backward on CPU
        h = jnp.reshape(h, (h.shape[0], -1))
        return self.head(self.activation(self.dense(h)))


@MODELS.register("cnn")
def make_cnn(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    rngs: nnx.Rngs,
    features: Sequence[int] = (32, 64),
    hidden: int = 128,
    kernel_size: int = 3,
    activation: str = "relu",
    fast_conv: bool = False,
) -> SmallCNN:
    if not isinstance(fast_conv, bool):
        raise ValueError(f"model.fast_conv={fast_conv!r}: expected True or False.")
    return SmallCNN(
        tuple(input_shape), num_classes, tuple(features), hidden, kernel_size, activation,
        rngs=rngs, fast_conv=fast_conv,
    )
