"""Blockwise (flash), sliding-window, block-sparse, linear and jax.nn attention vs naive."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models.attention import attend, make_mask
from jaxdl.models.efficient_attention import (
    blockwise_attention,
    linear_attention,
    linear_attention_reference,
    tile_schedule,
)


def _qkv(b=2, tq=21, tk=21, h=4, hk=2, d=8, seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    return (jax.random.normal(keys[0], (b, tq, h, d)),
            jax.random.normal(keys[1], (b, tk, hk, d)),
            jax.random.normal(keys[2], (b, tk, hk, d)),
            jax.random.normal(keys[3], (b, tq, h, d)))  # cotangent for the gradients


def _assert_same_outputs_and_grads(fast, naive, q, k, v, cot, atol=2e-5):
    """Outputs and input gradients (vector-Jacobian products with ``cot``), one jit each."""

    def output_and_grads(fn):
        def run(q, k, v):
            out, vjp = jax.vjp(fn, q, k, v)
            return out, vjp(cot)

        return jax.jit(run)(q, k, v)

    out_fast, g_fast = output_and_grads(fast)
    out_naive, g_naive = output_and_grads(naive)
    np.testing.assert_allclose(out_fast, out_naive, atol=atol)
    for a, b in zip(g_fast, g_naive):
        np.testing.assert_allclose(a, b, atol=atol * 5)


KEY_MASK = jnp.arange(21)[None] < jnp.array([[21], [13]])
CASES = {
    "causal": dict(causal=True),
    "padded_keys": dict(key_mask=KEY_MASK),
    "sliding_window": dict(causal=True, window=6),
    "window_bidirectional": dict(window=5),
    "alibi_causal": dict(causal=True, alibi=True),
    "block_sparse": dict(block_layout=np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], bool)),
}


@pytest.mark.parametrize("case", CASES)
def test_blockwise_matches_naive(case):
    q, k, v, cot = _qkv()
    kw = CASES[case]
    _assert_same_outputs_and_grads(
        lambda q, k, v: attend(q, k, v, implementation="blockwise", block_size=8, **kw),
        lambda q, k, v: attend(q, k, v, implementation="naive", block_size=8, **kw),
        q, k, v, cot)


def test_blockwise_with_cached_keys_offset():
    """Queries that follow cached keys: q_len 5 < k_len 21, q_offset 16."""
    q, k, v, cot = _qkv(tq=5)
    kw = dict(causal=True, q_offset=16)
    _assert_same_outputs_and_grads(
        lambda q, k, v: attend(q, k, v, implementation="blockwise", block_size=4, **kw),
        lambda q, k, v: attend(q, k, v, **kw), q, k, v, cot)


@pytest.mark.parametrize("case", ["padded_keys", "sliding_window", "alibi_causal"])
def test_jax_nn_dot_product_attention_path_matches_naive(case):
    q, k, v, cot = _qkv()
    kw = CASES[case]
    _assert_same_outputs_and_grads(
        lambda q, k, v: attend(q, k, v, implementation="xla", **kw),
        lambda q, k, v: attend(q, k, v, **kw), q, k, v, cot)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_matches_its_quadratic_form(causal):
    q, k, v, cot = _qkv()
    _assert_same_outputs_and_grads(
        lambda q, k, v: linear_attention(q, k, v, causal=causal, key_mask=KEY_MASK,
                                         chunk_size=8),
        lambda q, k, v: linear_attention_reference(q, k, v, causal=causal, key_mask=KEY_MASK),
        q, k, v, cot, atol=1e-5)


def test_tile_schedule_skips_tiles():
    causal = tile_schedule(4, 4, 8, 8, causal=True, window=None, q_offset=0, block_layout=None)
    assert len(causal) == 10 and all(j <= i for i, j in causal)
    local = tile_schedule(8, 8, 8, 8, causal=True, window=8, q_offset=0, block_layout=None)
    assert len(local) == 8 + 7  # the diagonal tile and the one before it
    # Every allowed (query, key) entry lies in a scheduled tile.
    mask = np.asarray(make_mask(64, 64, causal=True, window=8))[0, 0]
    tiles = {(i // 8, j // 8) for i, j in zip(*np.nonzero(mask))}
    assert tiles <= set(local)


def test_blockwise_temporary_memory_is_a_fraction_of_naive():
    """Compiled temp memory (XLA memory_analysis) of the gradient at seq 2048."""
    shape = jax.ShapeDtypeStruct((1, 2048, 2, 32), jnp.float32)

    def temp_bytes(implementation):
        def loss(q, k, v):
            return attend(q, k, v, implementation=implementation, causal=True,
                          block_size=256).sum()

        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(shape, shape, shape).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    naive, blockwise = temp_bytes("naive"), temp_bytes("blockwise")
    assert naive >= 2 * 2048 * 2048 * 4  # at least one [heads, seq, seq] float32 matrix
    assert blockwise * 8 < naive, (blockwise, naive)


def test_blockwise_bfloat16_operands():
    q, k, v, _ = _qkv()
    low = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    out = blockwise_attention(*low, causal=True, block_size=8)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.astype(jnp.float32), attend(q, k, v, causal=True), atol=0.1)


def test_linear_attention_rejects_masks_it_cannot_express():
    q, k, v, _ = _qkv()
    with pytest.raises(ValueError, match="linear"):
        attend(q, k, v, implementation="linear", window=4)


@pytest.mark.parametrize("causal", [False, True])
def test_performer_approximates_softmax_attention(causal):
    """FAVOR+ is a random-feature estimate: its error shrinks as the features grow."""
    from jaxdl.models.performer import performer_attention

    q, k, v, _ = _qkv(tq=32, tk=32, h=2, hk=2, d=16)
    q, k = 0.5 * q, 0.5 * k
    exact = attend(q, k, v, causal=causal)

    @jax.jit
    def errors(key):
        return [jnp.abs(performer_attention(q, k, v, key=key, num_features=m, causal=causal)
                        - exact).mean() for m in (16, 1024)]

    few, many = errors(jax.random.key(5))
    assert many < 0.5 * few and many < 0.02, (few, many)
