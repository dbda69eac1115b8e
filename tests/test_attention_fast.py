"""The hand-written-derivative fast paths: fused attention and the Linear layers' dot_general.

Each is compared, values and gradients, with the autodiff path it replaces (and fused
attention also with a float64 numpy reference)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models.attention import MultiHeadAttention, attend, dot_product_attention, make_mask
from jaxdl.models.fast_linear import dense_dot_general
from jaxdl.models.fused_attention import fused_attention
from jaxdl.models.positional import alibi_bias, alibi_slopes


def _qkv(b, tq, tk, h, hk, d, seed=0):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(b, tq, h, d)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(b, tk, hk, d)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(b, tk, hk, d)), jnp.float32)
    cot = jnp.asarray(rng.normal(size=(b, tq, h, d)), jnp.float32)
    return q, k, v, cot


def _numpy_attention(q, k, v, mask, bias):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, tq, h, d = q.shape
    g = h // k.shape[2]
    s = np.einsum("bqhd,bkhd->bhqk", q, np.repeat(k, g, axis=2)) / np.sqrt(d)
    if bias is not None:
        s = s + np.asarray(bias, np.float64)
    if mask is not None:
        s = np.where(np.asarray(mask), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, np.repeat(v, g, axis=2))


CASES = {  # (b, tq, tk, h, hk, d, mask options, alibi)
    "causal": (2, 8, 8, 4, 4, 16, dict(causal=True), False),
    "gqa_causal": (2, 8, 8, 4, 2, 16, dict(causal=True), False),
    "mqa_cached_queries": (2, 3, 8, 4, 1, 16, dict(causal=True, q_offset=5), False),
    "key_padding": (2, 8, 8, 4, 2, 16, dict(key_mask=True), False),
    "no_mask": (2, 5, 7, 2, 2, 8, {}, False),
    "alibi_window": (2, 8, 8, 4, 2, 16, dict(causal=True, window=3), True),
}


@pytest.mark.parametrize("case", CASES)
def test_fused_attention_matches_autodiff_and_numpy(case):
    b, tq, tk, h, hk, d, options, alibi = CASES[case]
    q, k, v, cot = _qkv(b, tq, tk, h, hk, d)
    options = dict(options)
    if options.get("key_mask"):
        options["key_mask"] = jnp.arange(tk)[None] < jnp.array([[5], [tk]])
    mask = make_mask(tq, tk, **options) if options else None
    bias = None
    if alibi:
        positions = jnp.arange(tq) + options.get("q_offset", 0)
        bias = alibi_bias(jnp.asarray(alibi_slopes(h)), positions, jnp.arange(tk))[None]

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v, mask=mask, bias=bias) * cot)

    value, grads = jax.jit(jax.value_and_grad(loss(fused_attention), (0, 1, 2)))(q, k, v)
    ref_value, ref_grads = jax.value_and_grad(loss(dot_product_attention), (0, 1, 2))(q, k, v)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-4)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    out = fused_attention(q, k, v, mask=mask, bias=bias)
    np.testing.assert_allclose(out, _numpy_attention(q, k, v, mask, bias), rtol=1e-5, atol=1e-5)


def test_attend_uses_fused_path_and_dropout_keeps_autodiff():
    q, k, v, _ = _qkv(2, 6, 6, 4, 2, 8)
    out = attend(q, k, v, causal=True)
    np.testing.assert_allclose(out, fused_attention(q, k, v, mask=make_mask(6, 6, causal=True)),
                               rtol=0, atol=0)
    out_w, weights = attend(q, k, v, causal=True, return_weights=True)
    np.testing.assert_array_equal(out_w, out)  # the same forward computation
    _, ref_weights = dot_product_attention(q, k, v, mask=make_mask(6, 6, causal=True),
                                           return_weights=True)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-6)
    dropped = attend(q, k, v, causal=True, dropout_rate=0.5, dropout_key=jax.random.key(1))
    assert not np.allclose(dropped, out)


def _linear_loss(dot_general, shape_in, n_out, dtype):
    layer = nnx.Linear(shape_in[-1], n_out, dot_general=dot_general, rngs=nnx.Rngs(0),
                       dtype=dtype, preferred_element_type=None if dtype is None else jnp.float32)
    graphdef, params = nnx.split(layer)
    x = jax.random.normal(jax.random.key(1), shape_in)
    cot = jax.random.normal(jax.random.key(2), shape_in[:-1] + (n_out,))

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x).astype(jnp.float32) * cot)

    return jax.jit(jax.value_and_grad(loss, (0, 1))), params, x


@pytest.mark.parametrize("shape_in,n_out", [((2, 5, 8), 24), ((3, 24), 8), ((2, 3, 4, 6), 6)])
@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
def test_dense_dot_general_matches_lax(shape_in, n_out, dtype):
    fast, params, x = _linear_loss(dense_dot_general, shape_in, n_out, dtype)
    ref, _, _ = _linear_loss(jax.lax.dot_general, shape_in, n_out, dtype)
    (value, (g_params, g_x)), (ref_value, (ref_params, ref_x)) = fast(params, x), ref(params, x)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype is None else dict(rtol=2e-2, atol=5e-2)
    np.testing.assert_allclose(value, ref_value, **tol)
    np.testing.assert_allclose(g_x, ref_x, **tol)
    for got, want in zip(jax.tree.leaves(g_params), jax.tree.leaves(ref_params)):
        np.testing.assert_allclose(got, want, **tol)


def test_dense_dot_general_falls_back_for_other_dimension_numbers():
    a = jax.random.normal(jax.random.key(0), (3, 4, 5))
    b = jax.random.normal(jax.random.key(1), (3, 5, 6))
    numbers = (((2,), (1,)), ((0,), (0,)))
    np.testing.assert_allclose(dense_dot_general(a, b, numbers),
                               jax.lax.dot_general(a, b, numbers), rtol=1e-6)


def test_multihead_attention_layers_use_the_fast_dot_general():
    mha = MultiHeadAttention(16, 4, rngs=nnx.Rngs(0))
    assert mha.qkv.dot_general is dense_dot_general and mha.out.dot_general is dense_dot_general


@pytest.mark.parametrize("tq,tk,options", [
    (8, 8, dict(causal=True)),
    (4, 10, dict(causal=True, q_offset=6)),
    (8, 8, dict(causal=True, window=3, global_tokens=1)),
    (7, 7, dict(causal=True)),  # odd length: no split
])
def test_causal_split_through_attend_matches_autodiff(tq, tk, options):
    """``attend`` skips the keys the first half of causal queries never sees: exact."""
    q, k, v, cot = _qkv(2, tq, tk, 4, 2, 8)
    mask = make_mask(tq, tk, **options)

    def fast(q, k, v):
        return jnp.sum(attend(q, k, v, **options) * cot)

    def ref(q, k, v):
        return jnp.sum(dot_product_attention(q, k, v, mask=mask) * cot)

    value, grads = jax.jit(jax.value_and_grad(fast, (0, 1, 2)))(q, k, v)
    ref_value, ref_grads = jax.value_and_grad(ref, (0, 1, 2))(q, k, v)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-4)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


def test_forward_mode_and_hessian_vector_products_match_autodiff():
    """Both fast paths are ``custom_jvp``s: ``jax.jvp`` and forward-over-reverse Hessian-vector
    products (what ``jaxdl.autodiff.products`` and K-FAC's ``jax.linearize`` use) work and
    equal those of the plain autodiff path (``dot_product_attention`` + ``lax.dot_general``)."""
    b, t, h, d = 2, 6, 2, 8
    x = jax.random.normal(jax.random.key(1), (b, t, h * d))
    mask = make_mask(t, t, causal=True)

    def loss(params, fast):
        q, k, v = (jnp.reshape(x @ params[i], (b, t, h, d)) for i in range(3))
        dot = dense_dot_general if fast else jax.lax.dot_general
        if fast:
            out = fused_attention(q, k, v, mask=mask, causal_offset=0)
        else:
            out = dot_product_attention(q, k, v, mask=mask)
        y = dot(out.reshape(b, t, h * d), params[3], (((2,), (0,)), ((), ())))
        return jnp.sum(jnp.tanh(y) ** 2)

    keys = jax.random.split(jax.random.key(2), 8)
    weights = [jax.random.normal(keys[i], (h * d, h * d)) * 0.3 for i in range(4)]
    direction = [jax.random.normal(keys[4 + i], (h * d, h * d)) for i in range(4)]

    def hvp(fast):
        return jax.jvp(jax.grad(lambda p: loss(p, fast)), (weights,), (direction,))

    (g_fast, hv_fast), (g_ref, hv_ref) = jax.jit(lambda: hvp(True))(), jax.jit(
        lambda: hvp(False))()
    for got, want in zip(g_fast + hv_fast, g_ref + hv_ref):  # float32 round-off only
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * float(jnp.abs(want).max()))
    assert float(sum(jnp.abs(v).sum() for v in hv_ref)) > 0  # a non-trivial direction


@pytest.mark.parametrize("n_in,n_out", [(12, 40), (40, 12)])  # both weight-gradient forms
def test_dense_dot_general_forward_mode_and_canonical_backward_dots(n_in, n_out):
    """``jax.jvp`` through either branch equals ``lax.dot_general``'s, and the compiled
    gradient holds no dot contracting an operand along its leading (row) axis: XLA:CPU
    sends those to Eigen instead of its faster matmul library (what the barriers prevent)."""
    keys = jax.random.split(jax.random.key(3), 5)
    x = jax.random.normal(keys[0], (6, 16, n_in))
    w = jax.random.normal(keys[1], (n_in, n_out))
    numbers = (((2,), (0,)), ((), ()))

    def f(x, w, dot):
        return jnp.tanh(dot(x, w, numbers))

    tangents = (jax.random.normal(keys[2], x.shape), jax.random.normal(keys[3], w.shape))
    got = jax.jvp(lambda x, w: f(x, w, dense_dot_general), (x, w), tangents)
    want = jax.jvp(lambda x, w: f(x, w, jax.lax.dot_general), (x, w), tangents)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    cot = jax.random.normal(keys[4], (6, 16, n_out))
    grad = jax.jit(jax.grad(lambda w: jnp.sum(f(x, w, dense_dot_general) * cot)))
    ref = jax.grad(lambda w: jnp.sum(f(x, w, jax.lax.dot_general) * cot))(w)
    np.testing.assert_allclose(grad(w), ref, rtol=1e-5, atol=1e-5)
    hlo = grad.lower(w).compile().as_text()
    assert "dot(" in hlo or "__ynn_fusion" in hlo
    assert "lhs_contracting_dims={0}" not in hlo, "a weight-gradient dot contracts along rows"
