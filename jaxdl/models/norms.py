"""Normalization layers: batch, layer, RMS, group and instance normalization, weight norm.

Every layer normalizes the last axis as features (channels-last images ``[batch, h, w, c]``
or vectors ``[batch, d]``) and follows the model convention ``layer(x, train=...)``.

* BatchNorm (Ioffe & Szegedy, 2015): statistics over every axis but the last. In training
  the batch statistics are used and the running averages (``nnx.BatchStat``, i.e. model
  *state*, not parameters) are updated; in evaluation the running averages are used.
  Under ``jax.jit`` with the batch sharded over a data-parallel mesh, ``jnp.mean`` over the
  batch axis is already a global (all-reduced) mean, so this is synchronized BatchNorm
  without any explicit collective.
* LayerNorm (Ba et al., 2016), RMSNorm (Zhang & Sennrich, 2019): per example, over features.
* GroupNorm (Wu & He, 2018): per example, over spatial axes and groups of channels;
  InstanceNorm (Ulyanov et al., 2016) is GroupNorm with one channel per group.
* Weight normalization (Salimans & Kingma, 2016): ``w = g * v / ||v||`` per output unit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["BatchNorm", "GroupNorm", "InstanceNorm", "LayerNorm", "RMSNorm",
           "WeightNormConv", "WeightNormLinear", "make_norm", "NORMS"]


class _Affine(nnx.Module):
    """Learned per-feature scale (init 1) and shift (init 0)."""

    def __init__(self, features: int, use_scale: bool = True, use_bias: bool = True):
        self.scale = nnx.Param(jnp.ones((features,))) if use_scale else None
        self.bias = nnx.Param(jnp.zeros((features,))) if use_bias else None

    def affine(self, y: jax.Array) -> jax.Array:
        if self.scale is not None:
            y = y * self.scale[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return y


class BatchNorm(_Affine):
    """``x: [batch, ..., features] -> same shape``.

    Args:
      features: size of the last axis.
      momentum: running average ``r <- momentum * r + (1 - momentum) * batch_stat``.
      epsilon: added to the variance.
      zero_init_scale: start the scale at 0 (the last BN of a residual branch, Goyal et al.,
        2017), so each residual block begins as the identity.
    """

    def __init__(self, features: int, *, momentum: float = 0.9, epsilon: float = 1e-5,
                 zero_init_scale: bool = False):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"BatchNorm momentum={momentum}: expected 0 <= momentum < 1.")
        super().__init__(features)
        if zero_init_scale:
            self.scale = nnx.Param(jnp.zeros((features,)))
        self.momentum = momentum
        self.epsilon = epsilon
        self.mean = nnx.BatchStat(jnp.zeros((features,)))
        self.var = nnx.BatchStat(jnp.ones((features,)))

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        del rngs
        if train:
            axes = tuple(range(x.ndim - 1))
            xf = x.astype(jnp.float32)
            mean = xf.mean(axes)
            var = jnp.maximum((xf * xf).mean(axes) - mean * mean, 0.0)
            m = self.momentum
            self.mean[...] = m * self.mean[...] + (1 - m) * jax.lax.stop_gradient(mean)
            self.var[...] = m * self.var[...] + (1 - m) * jax.lax.stop_gradient(var)
        else:
            mean, var = self.mean[...], self.var[...]
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return self.affine(y).astype(x.dtype)


class LayerNorm(_Affine):
    """``x: [..., features] -> same shape``; mean and variance over the last axis."""

    def __init__(self, features: int, *, epsilon: float = 1e-5):
        super().__init__(features)
        self.epsilon = epsilon

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        del train, rngs
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return self.affine((x - mean) * jax.lax.rsqrt(var + self.epsilon))


class RMSNorm(_Affine):
    """``x: [..., features] -> x / rms(x) * scale``; no centering, no bias."""

    def __init__(self, features: int, *, epsilon: float = 1e-6):
        super().__init__(features, use_bias=False)
        self.epsilon = epsilon

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        del train, rngs
        ms = (x * x).mean(-1, keepdims=True)
        return self.affine(x * jax.lax.rsqrt(ms + self.epsilon))


class GroupNorm(_Affine):
    """``x: [batch, ..., channels]``; statistics per example over the spatial axes and each
    group of ``channels // num_groups`` channels."""

    def __init__(self, features: int, *, num_groups: int = 32, epsilon: float = 1e-5):
        if num_groups < 1 or features % num_groups:
            raise ValueError(f"GroupNorm num_groups={num_groups}: expected a divisor of the "
                             f"{features} channels.")
        super().__init__(features)
        self.num_groups = num_groups
        self.epsilon = epsilon

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        del train, rngs
        shape = x.shape
        g = x.reshape(*shape[:-1], self.num_groups, shape[-1] // self.num_groups)
        axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
        mean = g.mean(axes, keepdims=True)
        var = ((g - mean) ** 2).mean(axes, keepdims=True)
        y = ((g - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(shape)
        return self.affine(y)


class InstanceNorm(GroupNorm):
    """GroupNorm with one channel per group: per example and channel, over space."""

    def __init__(self, features: int, *, epsilon: float = 1e-5):
        super().__init__(features, num_groups=features, epsilon=epsilon)


def _weight_norm(v: jax.Array, g: jax.Array) -> jax.Array:
    """``v: [..., out]`` directions, ``g: [out]`` lengths -> ``g * v / ||v||`` per output."""
    axes = tuple(range(v.ndim - 1))
    return v * (g * jax.lax.rsqrt((v * v).sum(axes)))


class WeightNormLinear(nnx.Module):
    """Dense layer with weight normalization: ``x: [..., in] -> [..., out]``.

    The kernel is reparametrized as direction ``v`` and per-output length ``g`` (init
    ``||v||``, so the initial function equals the plain layer's).
    """

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        v = nnx.initializers.lecun_normal()(rngs.params(), (in_features, out_features))
        self.v = nnx.Param(v)
        self.g = nnx.Param(jnp.sqrt((v * v).sum(0)))
        self.bias = nnx.Param(jnp.zeros((out_features,)))

    def kernel(self) -> jax.Array:
        return _weight_norm(self.v[...], self.g[...])

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        del train, rngs
        return x @ self.kernel() + self.bias[...]


class WeightNormConv(nnx.Module):
    """2-D convolution with weight normalization: ``x: [batch, h, w, in] -> [batch, h', w',
    out]`` (``SAME`` padding)."""

    convolves = True  # calls lax.conv itself (jaxdl.xla_cpu.has_convolutions)

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *,
                 strides: int = 1, rngs: nnx.Rngs):
        shape = (kernel_size, kernel_size, in_features, out_features)
        v = nnx.initializers.lecun_normal()(rngs.params(), shape)
        self.v = nnx.Param(v)
        self.g = nnx.Param(jnp.sqrt((v * v).sum((0, 1, 2))))
        self.bias = nnx.Param(jnp.zeros((out_features,)))
        self.strides = strides

    def kernel(self) -> jax.Array:
        return _weight_norm(self.v[...], self.g[...])

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        del train, rngs
        y = jax.lax.conv_general_dilated(
            x, self.kernel(), (self.strides,) * 2, "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + self.bias[...]


class _Identity(nnx.Module):
    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        del train, rngs
        return x


NORMS = ("batch", "layer", "rms", "group", "instance", "none")


def make_norm(name: str, features: int, *, zero_init_scale: bool = False,
              num_groups: int = 8) -> nnx.Module:
    """A normalization layer by name (one of :data:`NORMS`), for model configs' ``norm``.

    ``group`` uses ``gcd(num_groups, features)`` groups so any channel count works.
    """
    if name == "batch":
        return BatchNorm(features, zero_init_scale=zero_init_scale)
    if name == "layer":
        return LayerNorm(features)
    if name == "rms":
        return RMSNorm(features)
    if name == "group":
        import math
        return GroupNorm(features, num_groups=math.gcd(num_groups, features))
    if name == "instance":
        return InstanceNorm(features)
    if name == "none":
        return _Identity()
    raise ValueError(f"model.norm={name!r}: expected one of {list(NORMS)}.")
