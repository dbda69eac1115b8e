"""Scaled dot-product attention, masks and multi-head / grouped-query attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models.attention import (
    AdditiveAttention,
    MultiHeadAttention,
    attend,
    dot_product_attention,
    make_mask,
)


def numpy_attention(q, k, v, mask=None, bias=None):
    """float64 reference: per (batch, head) softmax(q k^T / sqrt(d) + bias, masked) v."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, tq, h, d = q.shape
    group = h // k.shape[2]
    out = np.zeros((b, tq, h, d))
    weights = np.zeros((b, h, tq, k.shape[1]))
    for i in range(b):
        for j in range(h):
            s = q[i, :, j] @ k[i, :, j // group].T / np.sqrt(d)
            if bias is not None:
                s = s + np.broadcast_to(bias, (b, h) + s.shape)[i, j]
            if mask is not None:
                s = np.where(np.broadcast_to(mask, (b, h) + s.shape)[i, j], s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            weights[i, j] = p
            out[i, :, j] = p @ v[i, :, j // group]
    return out, weights


def _qkv(b=2, tq=6, tk=6, h=4, hk=4, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(b, tq, h, d)).astype(np.float32),
            rng.normal(size=(b, tk, hk, d)).astype(np.float32),
            rng.normal(size=(b, tk, hk, d)).astype(np.float32))


@pytest.mark.parametrize("hk", [4, 2, 1])  # multi-head, grouped-query, multi-query
def test_attention_matches_float64_reference_with_masks_and_bias(hk):
    q, k, v = _qkv(tq=5, tk=7, hk=hk)
    key_mask = np.array([[True] * 7, [True] * 4 + [False] * 3])
    mask = np.asarray(make_mask(5, 7, causal=True, q_offset=2, key_mask=jnp.asarray(key_mask)))
    bias = np.random.default_rng(1).normal(size=(1, 4, 5, 7)).astype(np.float32)
    out, w = dot_product_attention(q, k, v, mask=mask, bias=bias, return_weights=True)
    ref_out, ref_w = numpy_attention(q, k, v, mask, bias)
    np.testing.assert_allclose(out, ref_out, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(w, ref_w, atol=2e-6, rtol=1e-5)


def test_causal_mask_never_attends_to_the_future():
    q, k, v = _qkv()
    out, w = attend(q, k, v, causal=True, return_weights=True)
    upper = np.triu(np.ones((6, 6), bool), k=1)
    assert np.all(np.asarray(w)[:, :, upper] == 0.0)
    # Changing future keys and values leaves every earlier output unchanged.
    k2, v2 = k.copy(), v.copy()
    k2[:, 3:] += 5.0
    v2[:, 3:] -= 7.0
    out2 = attend(q, k2, v2, causal=True)
    np.testing.assert_array_equal(np.asarray(out)[:, :3], np.asarray(out2)[:, :3])
    assert not np.allclose(np.asarray(out)[:, 3:], np.asarray(out2)[:, 3:])


def test_padded_keys_get_zero_weight():
    q, k, v = _qkv()
    key_mask = jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    out, w = attend(q, k, v, key_mask=key_mask, return_weights=True)
    assert np.all(np.asarray(w)[0, :, :, 4:] == 0.0)
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, rtol=1e-6)
    v2 = v.copy()
    v2[0, 4:] = 1e3  # garbage in the padding cannot leak into the output
    np.testing.assert_array_equal(out, attend(q, k, v2, key_mask=key_mask))


def test_sliding_window_mask():
    mask = np.asarray(make_mask(6, 6, causal=True, window=2))[0, 0]
    expected = np.eye(6, dtype=bool) | np.eye(6, k=-1, dtype=bool)
    np.testing.assert_array_equal(mask, expected)


def test_grouped_query_equals_multi_head_with_repeated_keys():
    q, k, v = _qkv(hk=2)
    grouped = dot_product_attention(q, k, v)
    repeated = dot_product_attention(q, np.repeat(k, 2, axis=2), np.repeat(v, 2, axis=2))
    np.testing.assert_allclose(grouped, repeated, atol=1e-6)


def test_grouped_query_with_one_group_per_head_is_multi_head():
    """num_kv_heads == num_heads builds the same parameters and function as MHA."""
    mha = MultiHeadAttention(32, 4, rngs=nnx.Rngs(0))
    gqa = MultiHeadAttention(32, 4, num_kv_heads=4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 32))
    np.testing.assert_array_equal(mha(x, causal=True), gqa(x, causal=True))
    mqa = MultiHeadAttention(32, 4, num_kv_heads=1, rngs=nnx.Rngs(0))
    assert mqa.qkv.kernel.shape == (32, 32 + 2 * 8)  # one shared key and value head


def test_multi_head_module_matches_numpy():
    mha = MultiHeadAttention(16, 4, num_kv_heads=2, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype(np.float32)
    out = mha(jnp.asarray(x), causal=True)
    w_qkv = np.asarray(mha.qkv.kernel[...], np.float64)
    b_qkv = np.asarray(mha.qkv.bias[...], np.float64)
    proj = x.astype(np.float64) @ w_qkv + b_qkv
    q = proj[..., :16].reshape(2, 5, 4, 4)
    kv = proj[..., 16:].reshape(2, 5, 2, 2, 4)
    mask = np.tril(np.ones((5, 5), bool))
    o, _ = numpy_attention(q, kv[:, :, 0], kv[:, :, 1], mask)
    ref = o.reshape(2, 5, 16) @ np.asarray(mha.out.kernel[...]) + np.asarray(mha.out.bias[...])
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_cross_attention_uses_context_length():
    mha = MultiHeadAttention(16, 2, cross=True, rngs=nnx.Rngs(0))
    x, ctx = jnp.ones((2, 3, 16)), jax.random.normal(jax.random.key(0), (2, 9, 16))
    out, w = mha(x, ctx, return_weights=True)
    assert out.shape == (2, 3, 16) and w.shape == (2, 2, 3, 9)


def test_bad_head_counts_are_clear_errors():
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        MultiHeadAttention(32, 4, num_kv_heads=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="d_model=30"):
        MultiHeadAttention(30, 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="model.attention='fast'"):
        MultiHeadAttention(32, 4, attention="fast", rngs=nnx.Rngs(0))


def test_additive_attention_matches_numpy():
    att = AdditiveAttention(6, 5, 7, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(2)
    q, k, v = rng.normal(size=(2, 3, 6)), rng.normal(size=(2, 4, 5)), rng.normal(size=(2, 4, 3))
    key_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    context, w = att(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)), jnp.asarray(key_mask))
    wq, wk = np.asarray(att.query.kernel[...]), np.asarray(att.key.kernel[...])
    bk, ws = np.asarray(att.key.bias[...]), np.asarray(att.score.kernel[...])[:, 0]
    scores = np.tanh((q @ wq)[:, :, None] + (k @ wk + bk)[:, None]) @ ws
    scores = np.where(key_mask[:, None], scores, -np.inf)
    ref = np.exp(scores - scores.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(w, ref, atol=1e-5)
    np.testing.assert_allclose(context, np.einsum("bqk,bkd->bqd", ref, v), atol=1e-5)
