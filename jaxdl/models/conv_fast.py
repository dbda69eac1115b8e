"""A 2-D convolution with a faster weight gradient on XLA:CPU.

XLA:CPU differentiates ``lax.conv_general_dilated`` into one weight-gradient convolution
whose "kernel" is the whole output cotangent ``g [batch, H, W, out]``, contracted with the
input over batch and space. Under XLA's default YNNPACK fusions that one convolution runs
~3x slower than PyTorch's weight gradient and was ~35% of the small CNN's train step.

Only under YNNPACK: the trainer now compiles convolutional steps with Eigen convolutions
(:mod:`jaxdl.xla_cpu`), which are multi-threaded and faster still, and there this module
gains nothing (weight gradient of a 32 -> 64 channel layer: 7.3 ms plain, 14.0 ms chunked).
``CurvatureConv(..., fast_conv=True)`` uses it; it is off by default.

:func:`conv2d` keeps XLA's forward and input-gradient convolutions and changes only how
the weight tangent is written, so that reverse mode transposes it into something faster:

* few input channels (``in <= MAX_PATCH_IN_FEATURES``, e.g. a 1-channel image): an im2col
  product (Chellapilla et al., 2006). The input is zero-padded to ``[batch, Hp, Wp, in]``
  and flattened to one row per padded pixel, so kernel tap ``(i, j)`` is the *contiguous*
  slice of rows starting at ``i * Wp + j``; the patch matrix
  ``P: [kh * kw * in, batch * Hp * Wp]`` stacks the ``kh * kw`` slices, output ``(h, w)``
  is padded-grid row ``h * Wp + w`` (the cotangent is zero-padded to that grid) and
  ``dW = P @ g``: one matmul instead of a convolution.
* more channels: the batch is split into chunks of ``CHUNK_EXAMPLES`` examples (at most
  ``MAX_CHUNKS`` chunks) and the tangent is written chunk by chunk, so the weight gradient
  becomes a *sum of per-chunk* weight-gradient convolutions. Mathematically the same
  sum over the batch; the smaller convolutions ran 2-3x faster here than the single big one.

It is a ``jax.custom_jvp`` (not a ``custom_vjp``), so forward mode (``jax.linearize``,
``jax.jvp``: K-FAC's curvature products, Hessian-vector products) still works.

:func:`conv_general_dilated` is a drop-in for ``lax.conv_general_dilated`` (the
``conv_general_dilated`` argument of ``nnx.Conv``) that uses :func:`conv2d` when it applies
(NHWC/HWIO, stride 1, no dilation, one feature group, float32, no precision/output-type
override) and ``lax`` otherwise. ``experiments.bench.cnn`` measures the effect.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["conv2d", "conv_general_dilated", "supports_fast"]

# Up to this many input channels the weight gradient is the patch matmul; above it (where
# the patch copies cost more than they save) it is a sum of per-chunk convolutions.
MAX_PATCH_IN_FEATURES = 4
# Examples per weight-gradient chunk (at least), and at most this many chunks.
CHUNK_EXAMPLES = 4
MAX_CHUNKS = 32

_NHWC = ("NHWC", "HWIO", "NHWC")


def _explicit_padding(padding, x_shape, kernel_shape) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], (1, 1), padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _patches_t(x: jax.Array, kh: int, kw: int, padding) -> jax.Array:
    """``x [n, h, w, c] -> P [kh * kw * c, n * Hp * Wp]`` (rows ordered ``(i, j, c)``)."""
    (plo, phi), (qlo, qhi) = padding
    n, h, w, c = x.shape
    hp, wp = h + plo + phi, w + qlo + qhi
    rows = n * hp * wp
    flat = jnp.pad(x, ((0, 0), (plo, phi), (qlo, qhi), (0, 0))).reshape(rows, c).T
    flat = jnp.pad(flat, ((0, 0), (0, (kh - 1) * wp + kw - 1)))
    taps = [flat[:, i * wp + j: i * wp + j + rows] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(taps, 0)


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, kernel: jax.Array, padding=((1, 1), (1, 1))) -> jax.Array:
    """``x [n, h, w, in] * kernel [kh, kw, in, out] -> [n, h', w', out]``, stride 1.

    Same value as ``lax.conv_general_dilated(x, kernel, (1, 1), padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))``; ``padding`` is ``"SAME"``, ``"VALID"``
    or ``((top, bottom), (left, right))``. Its weight gradient is a patch matmul or a sum
    of per-chunk convolutions (module doc).
    """
    return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_NHWC)


@conv2d.defjvp
def _conv2d_jvp(padding, primals, tangents):
    x, kernel = primals
    x_dot, kernel_dot = tangents
    y = conv2d(x, kernel, padding)
    y_dot = lax.conv_general_dilated(x_dot, kernel, (1, 1), padding, dimension_numbers=_NHWC)
    kh, kw, cin, cout = kernel.shape
    n = x.shape[0]
    if cin > MAX_PATCH_IN_FEATURES:
        # Linear in kernel_dot, one convolution per chunk of examples: reverse mode
        # transposes it into one small weight-gradient convolution per chunk, summed.
        size = max(CHUNK_EXAMPLES, -(-n // MAX_CHUNKS))
        parts = [lax.conv_general_dilated(x[i:i + size], kernel_dot, (1, 1), padding,
                                          dimension_numbers=_NHWC) for i in range(0, n, size)]
        return y, y_dot + jnp.concatenate(parts, 0)
    pads = _explicit_padding(padding, x.shape, kernel.shape)
    hp, wp = x.shape[1] + sum(pads[0]), x.shape[2] + sum(pads[1])
    # Linear in kernel_dot, with the patches as a constant: reverse mode transposes this
    # into dW = P @ g (g zero-padded to the padded grid), one [kh*kw*in, R] x [R, out].
    patches = _patches_t(x, kh, kw, pads)
    grid = lax.dot_general(patches, kernel_dot.reshape(kh * kw * cin, cout),
                           (((0,), (0,)), ((), ())))
    grid = grid.reshape(n, hp, wp, cout)[:, :y.shape[1], :y.shape[2]]
    return y, y_dot + grid


def supports_fast(lhs_shape, rhs_shape, window_strides, lhs_dilation=None, rhs_dilation=None,
                  dimension_numbers=None, feature_group_count=1, dtype=jnp.float32) -> bool:
    """Whether :func:`conv_general_dilated` takes the :func:`conv2d` path."""
    ones = (1, 1)
    return (len(lhs_shape) == 4 and len(rhs_shape) == 4
            and tuple(window_strides) == ones
            and tuple(lhs_dilation or ones) == ones and tuple(rhs_dilation or ones) == ones
            and feature_group_count == 1
            and _is_nhwc(dimension_numbers)
            and jnp.dtype(dtype) == jnp.float32)


def _is_nhwc(dimension_numbers) -> bool:
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, tuple) and all(isinstance(d, str)
                                                   for d in dimension_numbers):
        return tuple(dimension_numbers) == _NHWC
    lhs, rhs, out = dimension_numbers
    return tuple(lhs) == (0, 3, 1, 2) and tuple(rhs) == (3, 2, 0, 1) \
        and tuple(out) == (0, 3, 1, 2)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None,
                         **kwargs):
    """Drop-in for ``lax.conv_general_dilated``: :func:`conv2d` where
    :func:`supports_fast`, ``lax`` otherwise (also with a precision, an output type, a
    sharding or batch groups)."""
    fast = (batch_group_count == 1 and precision is None and preferred_element_type is None
            and kwargs.get("out_sharding") is None
            and lhs.dtype == rhs.dtype
            and supports_fast(lhs.shape, rhs.shape, window_strides, lhs_dilation,
                              rhs_dilation, dimension_numbers, feature_group_count, lhs.dtype))
    if fast:
        pads = _explicit_padding(padding, lhs.shape, rhs.shape)
        if min(min(p) for p in pads) >= 0:
            return conv2d(lhs, rhs, pads)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    batch_group_count, precision, preferred_element_type,
                                    **kwargs)
