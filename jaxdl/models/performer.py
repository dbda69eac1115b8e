"""FAVOR+ random features (Choromanski et al., 2021, "Rethinking Attention with Performers").

``exp(q . k / sqrt(d)) = E_w[phi(q) . phi(k)]`` with positive random features
``phi(x) = exp(w_i . x' - |x'|^2 / 2) / sqrt(m)``, ``x' = x / d**(1/4)``, ``w_i ~ N(0, I)``
drawn in orthogonal blocks (lower variance). With these features, linear attention
(:func:`jaxdl.models.efficient_attention.linear_attention`) is an unbiased, O(seq)
approximation of softmax attention whose error shrinks as ``num_features`` grows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.models.efficient_attention import linear_attention


def orthogonal_gaussian(key: jax.Array, num_features: int, dim: int) -> jax.Array:
    """``[num_features, dim]`` rows: orthogonal within blocks of ``dim``, with chi-distributed
    norms so each row is marginally ``N(0, I)``."""
    k_blocks, k_norms = jax.random.split(key)
    n_blocks = -(-num_features // dim)
    q, _ = jnp.linalg.qr(jax.random.normal(k_blocks, (n_blocks, dim, dim)))  # batched
    rows = jnp.swapaxes(q, -1, -2).reshape(n_blocks * dim, dim)[:num_features]
    norms = jnp.linalg.norm(jax.random.normal(k_norms, (num_features, dim)), axis=1)
    return rows * norms[:, None]


def favor_features(projection: jax.Array):
    """``feature_fn(q, k)`` for :func:`linear_attention`; ``projection: [m, head_dim]``."""

    def phi(x: jax.Array, stabilizer: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32) * x.shape[-1] ** -0.25
        logits = jnp.einsum("bthd,md->bthm", x, projection)
        sq = 0.5 * jnp.sum(x * x, axis=-1, keepdims=True)
        return jnp.exp(logits - sq - stabilizer) / jnp.sqrt(projection.shape[0])

    def feature_fn(q: jax.Array, k: jax.Array):
        # Constant shifts keep exp() in range; they cancel in the normalisation (per query
        # for q, one shared value for all keys).
        def shift(x, axes):
            x = x.astype(jnp.float32) * x.shape[-1] ** -0.25
            logits = jnp.einsum("bthd,md->bthm", x, projection)
            return jax.lax.stop_gradient(logits.max(axis=axes, keepdims=True))

        return phi(q, shift(q, -1)), phi(k, shift(k, (1, 3)))

    return feature_fn


def performer_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, key: jax.Array,
                        num_features: int = 256, causal: bool = False,
                        key_mask: jax.Array | None = None) -> jax.Array:
    """Approximate softmax attention, ``[batch, q_len, heads, d]`` (layout as in
    :func:`jaxdl.models.attention.attend`); ``key`` draws the random projection."""
    if num_features < 1:
        raise ValueError(f"num_features={num_features}: expected a positive integer.")
    projection = orthogonal_gaussian(key, num_features, q.shape[-1])
    return linear_attention(q, k, v, causal=causal, key_mask=key_mask,
                            feature_fn=favor_features(projection))
