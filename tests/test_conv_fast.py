"""jaxdl.models.conv_fast: same values, gradients (reverse and forward mode) as lax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models import conv_fast
from jaxdl.optim.kfac import CurvatureConv

DN = ("NHWC", "HWIO", "NHWC")


def _lax(x, w, padding):
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=DN)


def _numpy_conv(x, w, pads):
    """float64 direct convolution (cross-correlation), stride 1."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
    w = np.asarray(w, np.float64)
    kh, kw = w.shape[:2]
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", x[:, i:i + ho, j:j + wo], w[i, j])
    return out


CASES = [((2, 7, 6, 1), (3, 3, 1, 5), "SAME"),
         ((3, 8, 8, 3), (5, 5, 3, 4), "SAME"),
         ((2, 6, 9, 2), (3, 2, 2, 3), "VALID"),
         ((2, 5, 5, 1), (3, 3, 1, 2), ((2, 0), (1, 3))),
         # more than MAX_PATCH_IN_FEATURES channels: chunked weight gradient; 6 examples
         # in chunks of 4 + 2 (uneven last chunk)
         ((6, 6, 5, 7), (3, 3, 7, 4), "SAME"),
         ((5, 7, 7, 8), (3, 5, 8, 3), ((1, 0), (2, 2)))]


@pytest.mark.parametrize("x_shape,w_shape,padding", CASES)
def test_values_and_gradients_match_lax_and_float64(x_shape, w_shape, padding):
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, x_shape)
    w = jax.random.normal(kw, w_shape)
    y = conv_fast.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=DN)
    ref = _lax(x, w, padding)
    pads = conv_fast._explicit_padding(padding, x_shape, w_shape)
    np.testing.assert_allclose(y, _numpy_conv(x, w, pads), rtol=1e-5, atol=1e-5)
    g = jax.random.normal(kg, ref.shape)

    def loss(f):
        return lambda x, w: jnp.sum(f(x, w) * g)

    fast_grads = jax.jit(jax.grad(loss(lambda x, w: conv_fast.conv2d(x, w, pads)), (0, 1)))(x, w)
    ref_grads = jax.jit(jax.grad(loss(lambda x, w: _lax(x, w, padding)), (0, 1)))(x, w)
    for a, b in zip(fast_grads, ref_grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    # float64 weight gradient: sum_{n,h,w} xpad[n, h+i, w+j, c] g[n, h, w, o]
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
    ho, wo = ref.shape[1:3]
    dw = np.stack([np.stack([np.einsum("nhwc,nhwo->co", xp[:, i:i + ho, j:j + wo], g)
                             for j in range(w_shape[1])]) for i in range(w_shape[0])])
    np.testing.assert_allclose(fast_grads[1], dw, rtol=1e-4, atol=1e-4)


def test_forward_mode_and_second_order_match_lax():
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 1))
    w = jax.random.normal(jax.random.key(2), (3, 3, 1, 4))
    dx = jax.random.normal(jax.random.key(3), x.shape)
    dw = jax.random.normal(jax.random.key(4), w.shape)
    fast = jax.jit(lambda: jax.jvp(lambda x, w: conv_fast.conv2d(x, w, "SAME"), (x, w),
                                   (dx, dw)))()
    ref = jax.jvp(lambda x, w: _lax(x, w, "SAME"), (x, w), (dx, dw))
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    def loss(conv):
        return lambda w: jnp.sum(jnp.tanh(conv(x, w)) ** 2)

    hvp = [jax.jit(lambda c=c: jax.jvp(jax.grad(loss(c)), (w,), (dw,))[1])()
           for c in (lambda x, w: conv_fast.conv2d(x, w, "SAME"), lambda x, w: _lax(x, w, "SAME"))]
    np.testing.assert_allclose(hvp[0], hvp[1], rtol=1e-4, atol=1e-4)


def test_dispatch_falls_back_outside_the_fast_case():
    assert conv_fast.supports_fast((2, 8, 8, 1), (3, 3, 1, 4), (1, 1), None, None, DN)
    assert not conv_fast.supports_fast((2, 8, 8, 1), (3, 3, 1, 4), (2, 2), None, None, DN)
    assert not conv_fast.supports_fast((2, 8, 1, 8), (3, 3, 1, 4), (1, 1), None, None,
                                       ("NCHW", "OIHW", "NCHW"))
    x = jax.random.normal(jax.random.key(5), (2, 8, 8, 3))
    w = jax.random.normal(jax.random.key(6), (3, 3, 3, 4))
    for strides, dil in (((2, 2), (1, 1)), ((1, 1), (2, 2))):
        y = conv_fast.conv_general_dilated(x, w, strides, "SAME", rhs_dilation=dil,
                                           dimension_numbers=DN)
        ref = jax.lax.conv_general_dilated(x, w, strides, "SAME", rhs_dilation=dil,
                                           dimension_numbers=DN)
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("in_features", [1, 8])
def test_curvature_conv_fast_equals_plain(in_features):
    kwargs = dict(in_features=in_features, out_features=6, kernel_size=(3, 3))
    fast = CurvatureConv(**kwargs, fast_conv=True, rngs=nnx.Rngs(0))
    plain = CurvatureConv(**kwargs, rngs=nnx.Rngs(0))  # default: plain lax
    assert fast.conv_general_dilated is conv_fast.conv_general_dilated
    x = jax.random.normal(jax.random.key(7), (5, 6, 6, in_features))

    def loss(model):
        return jnp.sum(jnp.sin(model(x)))

    (la, ga), (lb, gb) = (nnx.jit(nnx.value_and_grad(loss))(m) for m in (fast, plain))
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
