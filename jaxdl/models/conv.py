"""Convolution utilities: pooling, im2col, depthwise-separable and 1-D convolutions, and a
receptive-field calculator.

Layouts are channels-last: images ``[batch, height, width, channels]``, sequences
``[batch, length, channels]``; kernels ``[kh, kw, in, out]`` (HWIO).

* Pooling (LeCun et al., 1998; Lin et al., 2014 for global average pooling).
* :func:`im2col` turns a convolution into one matrix product: each output position's
  receptive patch becomes a row, so ``conv(x, w) == im2col(x) @ w.reshape(-1, out)``.
* Dilated (atrous) convolutions (Yu & Koltun, 2016) are ``nnx.Conv(kernel_dilation=d)``.
* :class:`SeparableConv`: depthwise ``k x k`` per channel, then pointwise ``1 x 1``
  (Chollet, 2017; Howard et al., 2017), ``k^2 c + c c'`` weights instead of ``k^2 c c'``.
* :func:`receptive_field` (Araujo et al., 2019): ``r_l = r_{l-1} + (k_l - 1) d_l j_{l-1}``,
  ``j_l = j_{l-1} s_l`` for kernel ``k``, stride ``s``, dilation ``d``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.mlp import activation_fn
from jaxdl.models.registry import MODELS

__all__ = ["Conv1DClassifier", "SeparableConv", "avg_pool", "global_avg_pool",
           "global_max_pool", "im2col", "max_pool", "receptive_field"]


def max_pool(x: jax.Array, window: int = 2, stride: int | None = None,
             padding: str = "VALID") -> jax.Array:
    """``x: [batch, h, w, c] -> [batch, h', w', c]``: maximum over ``window x window``.

    Non-overlapping ``VALID`` windows (``stride == window``, the common 2x2/2 case) are a
    reshape and a max: its gradient is an elementwise mask, several times faster on CPU
    than XLA's generic ``select_and_scatter`` (``experiments.bench.cnn``).
    """
    stride = stride or window
    if stride == window and padding == "VALID" and x.ndim == 4:
        b, h, w, c = x.shape
        h, w = h // window * window, w // window * window
        blocks = x[:, :h, :w].reshape(b, h // window, window, w // window, window, c)
        return blocks.max((2, 4))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                                 (1, stride, stride, 1), padding)


def avg_pool(x: jax.Array, window: int = 2, stride: int | None = None,
             padding: str = "VALID") -> jax.Array:
    """``x: [batch, h, w, c] -> [batch, h', w', c]``: mean over each window (with ``SAME``
    padding, the mean over the window's in-bounds pixels only)."""
    stride = stride or window
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, padding)
    count = jax.lax.reduce_window(jnp.ones_like(x[:1, ..., :1]), 0.0, jax.lax.add, dims,
                                  strides, padding)
    return total / count


def global_avg_pool(x: jax.Array) -> jax.Array:
    """``x: [batch, ..., c] -> [batch, c]``: mean over every spatial axis."""
    return x.mean(tuple(range(1, x.ndim - 1)))


def global_max_pool(x: jax.Array) -> jax.Array:
    """``x: [batch, ..., c] -> [batch, c]``: maximum over every spatial axis."""
    return x.max(tuple(range(1, x.ndim - 1)))


def im2col(x: jax.Array, kernel_size: int, stride: int = 1, dilation: int = 1,
           padding: int = 0) -> jax.Array:
    """``x: [batch, h, w, c] -> patches: [batch, h', w', kernel_size^2 * c]``.

    The patch feature order is (ky, kx, c), matching an HWIO kernel reshaped to
    ``[kh * kw * in, out]``; written with explicit slicing so it is an independent
    implementation to test ``jax.lax.conv_general_dilated`` against.
    """
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    span = dilation * (kernel_size - 1) + 1
    out_h = (x.shape[1] - span) // stride + 1
    out_w = (x.shape[2] - span) // stride + 1
    cols = []
    for ky in range(kernel_size):
        for kx in range(kernel_size):
            y0, x0 = ky * dilation, kx * dilation
            cols.append(x[:, y0:y0 + stride * (out_h - 1) + 1:stride,
                          x0:x0 + stride * (out_w - 1) + 1:stride, :])
    return jnp.concatenate(cols, axis=-1)


def receptive_field(layers: Sequence[tuple[int, int] | tuple[int, int, int]]
                    ) -> dict[str, int]:
    """Receptive field of a stack of convolution/pooling layers.

    Args:
      layers: ``(kernel, stride)`` or ``(kernel, stride, dilation)`` per layer, input first.

    Returns:
      ``{"size": r, "jump": j}``: one output unit sees ``r x r`` input pixels, and
      neighbouring output units are ``j`` input pixels apart.
    """
    size, jump = 1, 1
    for i, layer in enumerate(layers):
        if len(layer) not in (2, 3) or any(int(v) < 1 for v in layer):
            raise ValueError(f"receptive_field layers[{i}]={layer!r}: expected (kernel, stride"
                             ") or (kernel, stride, dilation) of positive integers.")
        kernel, stride, dilation = (*layer, 1)[:3]
        size += (kernel - 1) * dilation * jump
        jump *= stride
    return {"size": size, "jump": jump}


class SeparableConv(nnx.Module):
    """Depthwise-separable convolution ``x: [batch, h, w, in] -> [batch, h', w', out]``.

    Depthwise: ``kernel_size^2`` weights per input channel (``feature_group_count=in``),
    optionally dilated; pointwise: a ``1 x 1`` convolution mixing channels.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *,
                 strides: int = 1, dilation: int = 1, use_bias: bool = True,
                 rngs: nnx.Rngs):
        self.depthwise = nnx.Conv(in_features, in_features, (kernel_size, kernel_size),
                                  strides=strides, kernel_dilation=dilation,
                                  feature_group_count=in_features, use_bias=False, rngs=rngs)
        self.pointwise = nnx.Conv(in_features, out_features, (1, 1), use_bias=use_bias,
                                  rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.pointwise(self.depthwise(x))


class Conv1DClassifier(nnx.Module):
    """1-D CNN for sequences or audio: ``x: [batch, length, channels]`` (or ``[batch,
    length]``) ``-> logits [batch, num_classes]``.

    Blocks of ``Conv1D(kernel, dilation 2^i) -> activation``, then global average pooling
    over time and a linear head; doubling dilations grow the receptive field exponentially
    with depth (van den Oord et al., 2016).
    """

    def __init__(self, in_channels: int, num_classes: int, features: Sequence[int],
                 kernel_size: int, activation: str, *, rngs: nnx.Rngs):
        self.activation = activation_fn(activation)
        channels, convs = in_channels, []
        for i, f in enumerate(features):
            convs.append(nnx.Conv(channels, f, (kernel_size,), kernel_dilation=2 ** i,
                                  rngs=rngs))
            channels = f
        self.convs = nnx.List(convs)
        self.head = nnx.Linear(channels, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        del train, rngs
        h = x[..., None] if x.ndim == 2 else x
        for conv in self.convs:
            h = self.activation(conv(h))
        return self.head(global_avg_pool(h))


@MODELS.register("conv1d")
def make_conv1d(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                features: Sequence[int] = (32, 32, 32), kernel_size: int = 3,
                activation: str = "relu") -> Conv1DClassifier:
    if len(input_shape) not in (1, 2):
        raise ValueError(f"model 'conv1d' expects sequences [length] or [length, channels]; "
                         f"got input_shape {tuple(input_shape)}.")
    channels = input_shape[1] if len(input_shape) == 2 else 1
    return Conv1DClassifier(channels, num_classes, tuple(features), kernel_size, activation,
                            rngs=rngs)


def conv_activation(name: str):
    """``activation_fn`` plus ``relu6`` (MobileNets)."""
    return jax.nn.relu6 if name == "relu6" else activation_fn(name)


class ConvNorm(nnx.Module):
    """``Conv -> Norm -> activation``, the unit of most CNN families.

    ``x: [batch, h, w, in] -> [batch, h / stride, w / stride, out]`` (``SAME`` padding).
    The convolution has no bias when a normalization follows (its shift would be removed).
    ``activation=None`` leaves the output linear (e.g. MobileNetV2's projections).
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *,
                 strides: int = 1, groups: int = 1, norm: str = "batch",
                 activation: str | None = "relu", zero_init_scale: bool = False,
                 rngs: nnx.Rngs):
        from jaxdl.models.norms import make_norm  # norms does not import conv

        self.conv = nnx.Conv(in_features, out_features, (kernel_size, kernel_size),
                             strides=strides, feature_group_count=groups,
                             use_bias=norm == "none", rngs=rngs)
        self.norm = make_norm(norm, out_features, zero_init_scale=zero_init_scale)
        self.activation = conv_activation(activation) if activation else None

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = self.norm(self.conv(x), train=train)
        return self.activation(y) if self.activation is not None else y
