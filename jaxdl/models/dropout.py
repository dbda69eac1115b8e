"""Dropout variants. All are the identity in evaluation (``train=False``) and, in training,
keep each unit with probability ``1 - rate`` and rescale by ``1 / (1 - rate)`` ("inverted"
dropout), so the expected output equals the input.

* :class:`Dropout`: independent units (Srivastava et al., 2014).
* :class:`SpatialDropout`: whole channels of a feature map ``[batch, ..., channels]``
  (Tompson et al., 2015), since neighbouring pixels of one channel are strongly correlated.
* :class:`DropConnectLinear`: drops individual *weights* of a dense layer, a fresh mask per
  example (Wan et al., 2013).
* :func:`drop_path`: stochastic depth, drops a whole residual branch per example
  (Huang et al., 2016); residual families call it on their branch output.

Randomness comes from the ``rngs`` passed at call time (the train step's per-step key).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["DropConnectLinear", "Dropout", "SpatialDropout", "drop_path", "dropout_mask"]


def _check_rate(rate: float, what: str = "rate") -> float:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout {what}={rate}: expected 0 <= {what} < 1.")
    return float(rate)


def dropout_mask(key: jax.Array, rate: float, shape: tuple[int, ...], dtype=jnp.float32):
    """Keep-mask scaled by ``1 / (1 - rate)``: entries are 0 or ``1 / (1 - rate)``."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / (1.0 - rate)


def _need_rngs(rngs: nnx.Rngs | None, name: str) -> nnx.Rngs:
    if rngs is None:
        raise ValueError(f"{name} in training mode needs rngs (pass rng= to functional.apply).")
    return rngs


class Dropout(nnx.Module):
    """``x: any shape -> same shape``; each element kept with probability ``1 - rate``."""

    def __init__(self, rate: float):
        self.rate = _check_rate(rate)

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        key = _need_rngs(rngs, "Dropout").dropout()
        return x * dropout_mask(key, self.rate, x.shape, x.dtype)


class SpatialDropout(nnx.Module):
    """``x: [batch, ..., channels] -> same shape``; one keep decision per (example, channel)."""

    def __init__(self, rate: float):
        self.rate = _check_rate(rate)

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        key = _need_rngs(rngs, "SpatialDropout").dropout()
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        return x * dropout_mask(key, self.rate, shape, x.dtype)


class DropConnectLinear(nnx.Module):
    """``x: [batch, in] -> [batch, out]``; in training each example sees its own random
    subset of the weights (scaled by ``1 / (1 - rate)``), in evaluation the full weights."""

    def __init__(self, in_features: int, out_features: int, rate: float, *, rngs: nnx.Rngs):
        self.rate = _check_rate(rate)
        self.linear = nnx.Linear(in_features, out_features, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        if not train or self.rate == 0.0:
            return self.linear(x)
        key = _need_rngs(rngs, "DropConnectLinear").dropout()
        kernel = self.linear.kernel[...]
        mask = dropout_mask(key, self.rate, (x.shape[0], *kernel.shape), x.dtype)
        return jnp.einsum("bi,bio->bo", x, kernel * mask) + self.linear.bias[...]


def drop_path(x: jax.Array, rate: float, *, train: bool,
              rngs: nnx.Rngs | None) -> jax.Array:
    """Stochastic depth on a residual branch ``x: [batch, ...]``: zero the whole branch for
    a random ``rate`` fraction of the examples, scale the rest by ``1 / (1 - rate)``."""
    _check_rate(rate, "drop_path_rate")
    if not train or rate == 0.0:
        return x
    key = _need_rngs(rngs, "drop_path").dropout()
    return x * dropout_mask(key, rate, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
