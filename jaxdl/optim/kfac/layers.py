"""Curvature versions of ``nnx.Conv``, ``nnx.Embed`` and ``nnx.LayerNorm``.

Each behaves exactly like its NNX parent outside a curvature scope. Inside one it records,
through the same zero-perturbation hook as :class:`~jaxdl.optim.kfac.tags.CurvatureLinear`,
what its K-FAC block needs (the output gradient comes from the perturbation):

* :class:`CurvatureConv` (KFC; Grosse & Martens, 2016): the input *patches*
  ``[batch, *out_spatial, in_features * prod(kernel_size)]`` from
  ``jax.lax.conv_general_dilated_patches``, ordered ``(in_feature, *kernel offsets)``, so
  the convolution is ``patches @ conv_kernel_matrix(kernel)``.
* :class:`CurvatureEmbed`: the integer ids ``[batch, ...]`` (the one-hot input of the
  equivalent dense layer, never materialised).
* :class:`CurvatureLayerNorm` and :class:`CurvatureBatchNorm` (scale-and-shift block, as in
  kfac-jax): the normalised input ``x_hat [batch, ..., features]`` that multiplies ``scale``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.optim.kfac.tags import active_scope

_SPATIAL = "DHW"


def _dimension_numbers(spatial: int) -> tuple[str, str, str]:
    letters = _SPATIAL[-spatial:] if spatial <= 3 else None
    if letters is None:
        raise ValueError(f"CurvatureConv supports 1-3 spatial dimensions, got {spatial}.")
    return f"N{letters}C", f"{letters}IO", f"N{letters}C"


def _lax_padding(padding, spatial: int):
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"CurvatureConv padding={padding!r}: expected 'SAME', 'VALID' "
                             "or explicit integers (circular/reflect/causal are not supported).")
        return padding.upper()
    if isinstance(padding, int):
        return ((padding, padding),) * spatial
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def conv_kernel_matrix(kernel: jax.Array) -> jax.Array:
    """``[*kernel_size, in, out] -> [in * prod(kernel_size), out]``, rows in patch order."""
    spatial = kernel.ndim - 2
    moved = jnp.moveaxis(kernel, spatial, 0)  # [in, *kernel_size, out]
    return moved.reshape(-1, kernel.shape[-1])


def conv_kernel_from_matrix(matrix: jax.Array, kernel_shape: tuple[int, ...]) -> jax.Array:
    """Inverse of :func:`conv_kernel_matrix`."""
    spatial = len(kernel_shape) - 2
    moved = matrix.reshape(kernel_shape[spatial], *kernel_shape[:spatial], kernel_shape[-1])
    return jnp.moveaxis(moved, 0, spatial)


class CurvatureConv(nnx.Conv):
    """``nnx.Conv`` (channels last, one batch axis, ``feature_group_count=1``, no input
    dilation or mask) whose patches and output gradients K-FAC can observe.

    ``fast_conv`` (default off): convolve with
    :func:`jaxdl.models.conv_fast.conv_general_dilated`: same values, a faster weight
    gradient on CPU when the step is compiled with XLA's default YNNPACK convolutions (stride
    1, float32, no dilation; other cases use ``lax`` unchanged). The trainer compiles
    convolutional steps with Eigen convolutions instead (:mod:`jaxdl.xla_cpu`), where it
    gains nothing (``experiments.bench.cnn``)."""

    curvature_name: str = ""

    def __init__(self, *args, fast_conv: bool = False, **kwargs):
        if fast_conv and "conv_general_dilated" not in kwargs:
            from jaxdl.models.conv_fast import conv_general_dilated  # import cycle otherwise

            kwargs["conv_general_dilated"] = conv_general_dilated
        super().__init__(*args, **kwargs)
        spatial = len(self.kernel_size)
        if self.feature_group_count != 1 or self.mask is not None:
            raise ValueError("CurvatureConv: feature_group_count must be 1 and mask None.")
        dilation = self.input_dilation
        if dilation not in (None, 1) and tuple(dilation) != (1,) * spatial:
            raise ValueError(f"CurvatureConv input_dilation={dilation!r}: expected 1.")
        self._padding = _lax_padding(self.padding, spatial)

    def patches(self, x: jax.Array) -> jax.Array:
        """``[batch, *spatial, in] -> [batch, *out_spatial, in * prod(kernel_size)]``."""
        spatial = len(self.kernel_size)

        def broadcast(v):
            return (1,) * spatial if v is None else (v,) * spatial if isinstance(v, int) \
                else tuple(v)

        return jax.lax.conv_general_dilated_patches(
            x, self.kernel_size, broadcast(self.strides), self._padding,
            rhs_dilation=broadcast(self.kernel_dilation),
            dimension_numbers=_dimension_numbers(spatial))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = super().__call__(x)
        scope = active_scope(self)
        if scope is None:
            return y
        if x.ndim != len(self.kernel_size) + 2:
            raise ValueError(f"CurvatureConv {self.curvature_name}: expected input "
                             f"[batch, *spatial, channels], got shape {x.shape}.")
        return scope.record(self.curvature_name, "conv", self.patches(x), y)


class CurvatureEmbed(nnx.Embed):
    """``nnx.Embed``: ``ids int [batch, ...] -> [batch, ..., features]``, observable by
    K-FAC as the dense layer ``one_hot(ids) @ embedding`` (its ``A`` factor is diagonal)."""

    curvature_name: str = ""

    def __call__(self, ids: jax.Array) -> jax.Array:
        y = super().__call__(ids)
        scope = active_scope(self)
        if scope is None:
            return y
        return scope.record(self.curvature_name, "embed", ids, y)


class CurvatureLayerNorm(nnx.LayerNorm):
    """``nnx.LayerNorm`` over the last axis (``x [batch, ..., features]``) whose per-feature
    ``scale``/``bias`` gradients K-FAC can observe (a diagonal scale-and-shift block)."""

    curvature_name: str = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.reduction_axes not in (-1, (-1,)) or self.feature_axes not in (-1, (-1,)):
            raise ValueError("CurvatureLayerNorm: reduction_axes and feature_axes must be -1.")

    def __call__(self, x: jax.Array, *, mask=None) -> jax.Array:
        scope = active_scope(self)
        if scope is None:
            return super().__call__(x, mask=mask)
        if mask is not None:
            raise ValueError("CurvatureLayerNorm: mask is not supported under K-FAC.")
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        x_hat = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = x_hat
        if self.scale is not None:
            y = y * self.scale[...]
        if self.bias is not None:
            y = y + self.bias[...]
        y = y.astype(self.dtype or x.dtype)
        return scope.record(self.curvature_name, "scale_shift", x_hat, y)


class CurvatureBatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` over the last axis whose per-feature ``scale``/``bias`` gradients
    K-FAC can observe (scale-and-shift block). The running statistics update as usual; under
    a scope the output is recomputed from ``x_hat`` (batch statistics in training, running
    ones otherwise), treating examples as independent as kfac-jax does (the coupling through
    the batch statistics is ignored by the diagonal Fisher estimate)."""

    curvature_name: str = ""

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
                 mask=None) -> jax.Array:
        y = super().__call__(x, use_running_average, mask=mask)
        scope = active_scope(self)
        if scope is None:
            return y
        if mask is not None or self.axis_name is not None or self.axis not in (-1, x.ndim - 1):
            raise ValueError("CurvatureBatchNorm under K-FAC: axis must be -1, no mask and "
                             "no axis_name.")
        running = self.use_running_average if use_running_average is None \
            else use_running_average
        x32 = x.astype(jnp.float32)
        if running:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean, var = x32.mean(axes), jnp.square(x32 - x32.mean(axes)).mean(axes)
        x_hat = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        out = x_hat
        if self.scale is not None:
            out = out * self.scale[...]
        if self.bias is not None:
            out = out + self.bias[...]
        return scope.record(self.curvature_name, "scale_shift", x_hat, out.astype(y.dtype))


def spatial_size(patches: jax.Array) -> int:
    """Number of output positions ``|T|`` of recorded conv patches ``[batch, *T, P]``."""
    return math.prod(patches.shape[1:-1])
