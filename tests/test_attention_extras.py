"""Global tokens (Longformer/BigBird) with sliding-window attention against naive attention
under the equivalent dense mask, and attention-probability dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models.attention import MultiHeadAttention, attend, dot_product_attention
from jaxdl.models.efficient_attention import tile_schedule
from jaxdl.models.transformer import TransformerBlock

B, T, HEADS, KV_HEADS, D = 2, 21, 4, 2, 8
LENGTHS = np.array([21, 15])


def _qkv(seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    return (jax.random.normal(keys[0], (B, T, HEADS, D)),
            jax.random.normal(keys[1], (B, T, KV_HEADS, D)),
            jax.random.normal(keys[2], (B, T, KV_HEADS, D)),
            jax.random.normal(keys[3], (B, T, HEADS, D)))


def _dense_mask(window, global_tokens, causal, lengths=None):
    """Written out entry by entry: local window, OR a global query, OR a global key; then
    causality and key padding."""
    mask = np.zeros((len(LENGTHS), 1, T, T), bool)
    for b in range(len(LENGTHS)):
        for i in range(T):
            for j in range(T):
                local = abs(i - j) < window if not causal else i - window < j <= i
                ok = local or i < global_tokens or j < global_tokens
                ok = ok and (j <= i or not causal)
                ok = ok and (lengths is None or j < lengths[b])
                mask[b, 0, i, j] = ok
    return mask


@pytest.mark.parametrize("causal", [True, False])
def test_global_tokens_with_window_match_naive_dense_mask(causal):
    q, k, v, cot = _qkv()
    window, g = 4, 3
    key_mask = jnp.asarray(np.arange(T)[None] < LENGTHS[:, None])
    dense = jnp.asarray(_dense_mask(window, g, causal, LENGTHS))
    # The reference mask really differs from the plain window (the globals matter).
    plain = _dense_mask(window, 0, causal, LENGTHS)
    assert (np.asarray(dense) != plain).sum() > 20

    def reference(q, k, v):
        return dot_product_attention(q, k, v, mask=dense)

    def run(implementation):
        return lambda q, k, v: attend(q, k, v, implementation=implementation, causal=causal,
                                      window=window, key_mask=key_mask, global_tokens=g,
                                      block_size=8)

    def output_and_grads(fn):
        def go(q, k, v):
            out, vjp = jax.vjp(fn, q, k, v)
            return out, vjp(cot)
        return jax.jit(go)(q, k, v)

    ref_out, ref_grads = output_and_grads(reference)
    for implementation in ("naive", "blockwise"):
        out, grads = output_and_grads(run(implementation))
        np.testing.assert_allclose(out, ref_out, atol=2e-5, err_msg=implementation)
        for a, b in zip(grads, ref_grads):
            np.testing.assert_allclose(a, b, atol=1e-4, err_msg=implementation)
    np.testing.assert_allclose(jax.jit(run("xla"))(q, k, v), ref_out, atol=2e-5)


def test_global_tile_schedule_is_exactly_the_nonempty_tiles():
    bq = bk = 4
    n = -(-T // bq)
    for causal in (True, False):
        dense = np.pad(_dense_mask(3, 2, causal)[0, 0], ((0, n * bq - T), (0, n * bk - T)))
        nonempty = dense.reshape(n, bq, n, bk).any(axis=(1, 3))
        expected = {(int(a), int(b)) for a, b in zip(*np.nonzero(nonempty))}
        schedule = tile_schedule(n, n, bq, bk, causal=causal, window=3, q_offset=0,
                                 block_layout=None, global_tokens=2)
        assert set(schedule) == expected
        plain = tile_schedule(n, n, bq, bk, causal=causal, window=3, q_offset=0,
                              block_layout=None)
        assert len(schedule) > len(plain)


def test_attention_dropout_rate_zero_eval_identity_and_expectation():
    q, k, v, _ = _qkv(1)
    base = dot_product_attention(q, k, v)
    key = jax.random.key(9)
    # Rate 0 with a key, and a rate without a key (evaluation): bit-identical to no dropout.
    np.testing.assert_array_equal(dot_product_attention(q, k, v, dropout_rate=0.0,
                                                        dropout_key=key), base)
    np.testing.assert_array_equal(dot_product_attention(q, k, v, dropout_rate=0.4), base)
    dropped = dot_product_attention(q, k, v, dropout_rate=0.4, dropout_key=key)
    assert np.abs(np.asarray(dropped - base)).max() > 1e-2
    # The output is linear in the dropped probabilities: its mean over many keys is the
    # undropped output, within a Monte-Carlo tolerance from the per-key spread.
    n = 2000
    samples = jax.jit(jax.vmap(lambda kk: dot_product_attention(
        q[:1], k[:1], v[:1], dropout_rate=0.4, dropout_key=kk)))(jax.random.split(key, n))
    samples = np.asarray(samples)
    err = np.abs(samples.mean(0) - np.asarray(base[:1]))
    assert np.all(err <= 5 * samples.std(0) / np.sqrt(n) + 1e-6)
    # Weights are returned before dropout (they still sum to one).
    _, w = dot_product_attention(q, k, v, dropout_rate=0.4, dropout_key=key,
                                 return_weights=True)
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-5)


def test_attention_dropout_in_modules_and_blocks():
    x = jax.random.normal(jax.random.key(2), (B, 7, 16))
    plain = MultiHeadAttention(16, 4, rngs=nnx.Rngs(0))
    drop = MultiHeadAttention(16, 4, attention_dropout=0.3, rngs=nnx.Rngs(0))
    zero = MultiHeadAttention(16, 4, attention_dropout=0.0, rngs=nnx.Rngs(0))
    key = jax.random.key(3)
    np.testing.assert_array_equal(drop(x, causal=True), plain(x, causal=True))
    np.testing.assert_array_equal(zero(x, causal=True, dropout_key=key), plain(x, causal=True))
    assert np.abs(np.asarray(drop(x, causal=True, dropout_key=key) - plain(x, causal=True))
                  ).max() > 1e-3
    # A block: attention dropout on, residual dropout off; the key switches it on.
    block = TransformerBlock(16, 4, attention_dropout=0.3, rngs=nnx.Rngs(0))
    block_plain = TransformerBlock(16, 4, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(block(x, causal=True), block_plain(x, causal=True))
    np.testing.assert_array_equal(block_plain(x, causal=True, dropout_key=key),
                                  block_plain(x, causal=True))
    assert np.abs(np.asarray(block(x, causal=True, dropout_key=key)
                             - block_plain(x, causal=True))).max() > 1e-3


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="model.attention_dropout"):
        MultiHeadAttention(16, 4, attention="blockwise", attention_dropout=0.1,
                           rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="model.attention_dropout"):
        MultiHeadAttention(16, 4, attention_dropout=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="model.global_tokens"):
        MultiHeadAttention(16, 4, global_tokens=-1, rngs=nnx.Rngs(0))
    q, k, v, _ = _qkv()
    with pytest.raises(ValueError, match="global_tokens"):
        attend(q, k, v, implementation="blockwise", global_tokens=2, block_size=8,
               block_layout=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="linear"):
        attend(q, k, v, implementation="linear", global_tokens=2)


def test_gpt_options_reach_the_blocks():
    """``attention_dropout`` alone (no residual dropout) still draws keys in training, and
    ``global_tokens`` lets a position outside every window see the first token."""
    from jaxdl.models.transformer_models import GPT

    x = jnp.arange(12, dtype=jnp.int32).reshape(1, 12) % 7
    gpt = GPT(7, 12, d_model=16, num_layers=1, num_heads=2, attention_dropout=0.5,
              rngs=nnx.Rngs(0))
    eval_out = gpt(x)
    train_out = gpt(x, train=True, rngs=nnx.Rngs(dropout=1))
    assert not np.allclose(eval_out, train_out)
    np.testing.assert_array_equal(gpt(x, train=True, rngs=None), eval_out)

    def first_token_influence(global_tokens):
        model = GPT(7, 12, d_model=16, num_layers=1, num_heads=2, window=2,
                    global_tokens=global_tokens, rngs=nnx.Rngs(0))
        changed = x.at[0, 0].set(6)
        return float(jnp.abs(model(x)[0, -1] - model(changed)[0, -1]).max())

    assert first_token_influence(0) == 0.0  # token 0 is outside the last position's window
    assert first_token_influence(1) > 1e-4
