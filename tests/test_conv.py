"""Convolution utilities: conv == im2col matmul == numpy loops, pooling against numpy,
separable convolutions, receptive fields checked by gradients, the 1-D model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models import MODELS, conv

RNG = np.random.default_rng(0)


def _conv_numpy(x, w, stride, dilation, padding):
    """Direct float64 loops: out[b, i, j, o] = sum x[b, i*s + ky*d, j*s + kx*d, c] w[ky,kx,c,o]."""
    x = np.pad(x.astype(np.float64), ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)))
    k = w.shape[0]
    span = dilation * (k - 1) + 1
    oh, ow = (x.shape[1] - span) // stride + 1, (x.shape[2] - span) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            for ky in range(k):
                for kx in range(k):
                    out[:, i, j] += x[:, i * stride + ky * dilation,
                                      j * stride + kx * dilation] @ w[ky, kx]
    return out


@pytest.mark.parametrize("stride,dilation,padding", [(1, 1, 1), (2, 1, 0), (1, 2, 2)])
def test_convolution_equals_im2col_matrix_product(stride, dilation, padding):
    x = RNG.normal(size=(2, 7, 8, 3)).astype(np.float32)
    w = RNG.normal(size=(3, 3, 3, 5)).astype(np.float32)
    lax_out = jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(padding, padding)] * 2, rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    patches = conv.im2col(jnp.asarray(x), 3, stride, dilation, padding)
    matmul_out = patches @ w.reshape(-1, 5)
    reference = _conv_numpy(x, w, stride, dilation, padding)
    np.testing.assert_allclose(matmul_out, reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lax_out, reference, rtol=1e-4, atol=1e-4)


def test_nnx_dilated_conv_matches_reference():
    layer = nnx.Conv(2, 3, (3, 3), kernel_dilation=2, padding="VALID", use_bias=False,
                     rngs=nnx.Rngs(0))
    x = RNG.normal(size=(1, 9, 9, 2)).astype(np.float32)
    np.testing.assert_allclose(layer(x), _conv_numpy(x, np.asarray(layer.kernel[...]), 1, 2, 0),
                               rtol=1e-4, atol=1e-4)


def test_pooling_matches_numpy():
    x = RNG.normal(size=(2, 6, 6, 3)).astype(np.float32)
    blocks = x.reshape(2, 3, 2, 3, 2, 3)
    np.testing.assert_allclose(conv.max_pool(x, 2), blocks.max((2, 4)), rtol=1e-6)
    np.testing.assert_allclose(conv.avg_pool(x, 2), blocks.mean((2, 4)), rtol=1e-5)
    np.testing.assert_allclose(conv.global_avg_pool(x), x.mean((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(conv.global_max_pool(x), x.max((1, 2)), rtol=1e-6)
    # SAME average pooling divides corner windows by their in-bounds count only
    same = conv.avg_pool(jnp.ones((1, 5, 5, 1)), 3, 1, "SAME")
    np.testing.assert_allclose(same, 1.0, rtol=1e-6)


def test_separable_conv_parameter_count_and_equivalence():
    layer = conv.SeparableConv(4, 6, 3, use_bias=False, rngs=nnx.Rngs(0))
    _, params, _ = functional.split_model(layer)
    assert functional.count_params(params) == 3 * 3 * 4 + 4 * 6
    x = RNG.normal(size=(2, 5, 5, 4)).astype(np.float32)
    dw = np.asarray(layer.depthwise.kernel[...])  # [3, 3, 1, 4]
    pw = np.asarray(layer.pointwise.kernel[...])  # [1, 1, 4, 6]
    # the equivalent dense kernel: k[ky, kx, c, o] = dw[ky, kx, 0, c] * pw[0, 0, c, o]
    dense = np.einsum("yxc,co->yxco", dw[:, :, 0, :], pw[0, 0])
    np.testing.assert_allclose(layer(x), _conv_numpy(x, dense, 1, 1, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layers", [
    [(3, 1), (3, 1)],
    [(3, 1), (2, 2), (3, 1)],
    [(3, 1, 1), (3, 1, 2), (3, 1, 4)],
    [(5, 2), (3, 2, 2)],
])
def test_receptive_field_matches_gradient_support(layers):
    """The set of input pixels with non-zero gradient of one output unit is r x r."""
    rf = conv.receptive_field(layers)
    size = 64
    keys = iter(jax.random.split(jax.random.key(0), len(layers)))
    kernels = [jnp.abs(jax.random.normal(next(keys), (k, k, 1, 1))) + 0.1
               for k, *_ in layers]

    def net(x):
        for (_, s, *d), w in zip(layers, kernels):
            x = jax.lax.conv_general_dilated(x, w, (s, s), "VALID",
                                             rhs_dilation=(d[0] if d else 1,) * 2,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return x

    x = jnp.ones((1, size, size, 1))
    out = net(x)
    i = out.shape[1] // 2
    grad = jax.grad(lambda z: net(z)[0, i, i, 0])(x)[0, :, :, 0]
    rows = np.nonzero(np.asarray(grad).any(1))[0]
    assert rows.max() - rows.min() + 1 == rf["size"]
    assert rows.min() == i * rf["jump"]


def test_receptive_field_rejects_bad_layer():
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        conv.receptive_field([(3, 1), (0, 1)])


def test_conv1d_model_shapes_and_input_check():
    model = MODELS.build({"name": "conv1d", "features": (4, 4)}, field="model",
                         input_shape=(32, 2), num_classes=3, rngs=nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    x = np.zeros((2, 32, 2), np.float32)
    x[:, 10:14] = RNG.normal(size=(2, 4, 2))
    out, _ = functional.apply(graphdef, params, state, x)
    assert out.shape == (2, 3)
    with pytest.raises(ValueError, match="conv1d"):
        MODELS.build({"name": "conv1d"}, field="model", input_shape=(4, 4, 1), num_classes=3,
                     rngs=nnx.Rngs(0))


def test_fast_max_pool_matches_reduce_window_values_and_gradients():
    x = jnp.asarray(RNG.normal(size=(2, 7, 9, 3)).astype(np.float32))  # odd sizes: floor

    def reference(z):
        return jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                     "VALID")

    np.testing.assert_array_equal(conv.max_pool(x, 2), reference(x))
    weights = jnp.asarray(RNG.normal(size=(2, 3, 4, 3)).astype(np.float32))
    g_fast = jax.grad(lambda z: (conv.max_pool(z, 2) * weights).sum())(x)
    g_ref = jax.grad(lambda z: (reference(z) * weights).sum())(x)
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-6)
