"""Positional encodings: sinusoidal, learned, rotary (RoPE) and ALiBi."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models.positional import (
    LearnedPositions,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    check_positional,
    sinusoidal_encoding,
)


def test_sinusoidal_closed_form_and_relative_rotation():
    table = sinusoidal_encoding(50, 8)
    p, i = 7, 2
    freq = 10000.0 ** (-i / 4)
    np.testing.assert_allclose(table[p, i], np.sin(p * freq), rtol=1e-6)
    np.testing.assert_allclose(table[p, 4 + i], np.cos(p * freq), rtol=1e-6)
    # Position p + k is a rotation of position p, the same rotation for every p.
    k = 5
    for p in (3, 20):
        sin, cos = table[p, :4], table[p, 4:]
        angle = k * 10000.0 ** (-np.arange(4) / 4)
        sk, ck = np.sin(angle), np.cos(angle)
        np.testing.assert_allclose(table[p + k, :4], sin * ck + cos * sk, atol=1e-5)
        np.testing.assert_allclose(table[p + k, 4:], cos * ck - sin * sk, atol=1e-5)


def test_rope_preserves_norms():
    x = jax.random.normal(jax.random.key(0), (2, 9, 3, 16))
    rotated = apply_rope(x, jnp.arange(9) * 37)
    np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1),
                               rtol=1e-5)
    np.testing.assert_allclose(apply_rope(x, jnp.zeros(9, int)), x)  # position 0: identity


def test_rope_scores_depend_only_on_relative_position():
    q = jax.random.normal(jax.random.key(1), (1, 1, 1, 16))
    k = jax.random.normal(jax.random.key(2), (1, 1, 1, 16))

    def score(pq, pk):
        return float(jnp.sum(apply_rope(q, jnp.array([pq])) * apply_rope(k, jnp.array([pk]))))

    np.testing.assert_allclose(score(10, 4), score(106, 100), rtol=1e-4)
    np.testing.assert_allclose(score(3, 3), float(jnp.sum(q * k)), rtol=1e-5)
    assert abs(score(10, 4) - score(10, 5)) > 1e-3  # but it does depend on the offset


def test_alibi_slopes_and_bias():
    np.testing.assert_allclose(alibi_slopes(8), 2.0 ** -np.arange(1, 9))
    s6 = alibi_slopes(6)  # 4 from the power of two below, then every other slope of 8
    np.testing.assert_allclose(s6, [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])
    bias = alibi_bias(alibi_slopes(2), jnp.arange(3), jnp.arange(3))
    np.testing.assert_allclose(bias[0], -(2 ** -4) * np.abs(np.subtract.outer(range(3), range(3))))


def test_learned_positions_lookup_and_unknown_scheme():
    table = LearnedPositions(10, 4, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(table(jnp.array([3, 1])), table.table[...][jnp.array([3, 1])])
    with pytest.raises(ValueError, match="model.positional='absolute'"):
        check_positional("absolute")
