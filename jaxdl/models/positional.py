"""Positional information for attention: sinusoidal, learned, rotary (RoPE) and ALiBi.

Two families:
  * *additive* encodings, added to token embeddings before the first block:
    :func:`sinusoidal_encoding` (Vaswani et al., 2017) and :class:`LearnedPositions`
    (Gehring et al., 2017; GPT-2);
  * *relative* schemes, applied inside attention: :func:`apply_rope` rotates queries and keys
    (Su et al., 2021, "RoFormer"), :func:`alibi_bias` adds a per-head linear distance penalty
    to the attention logits (Press et al., 2022, "Train Short, Test Long").

Layouts: token tensors ``[batch, seq, d_model]``, per-head tensors
``[batch, seq, heads, head_dim]``, positions ``int [seq]`` or ``[batch, seq]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

POSITIONAL = ("none", "sinusoidal", "learned", "rope", "alibi")


def check_positional(name: str, *, field: str = "model.positional") -> str:
    """Return ``name`` if it is a known scheme; ValueError naming ``field`` otherwise."""
    if name not in POSITIONAL:
        raise ValueError(f"{field}={name!r}: expected one of {list(POSITIONAL)}.")
    return name


def sinusoidal_encoding(length: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    """Fixed sinusoids, float32 ``[length, d_model]``.

    Feature pair ``i`` (``i < d_model / 2``) oscillates with wavelength ``base ** (2i / d)``:
    the first half of the features holds the sines, the second half the cosines, so the
    encoding of position ``p + k`` is a fixed rotation of that of ``p`` for every ``k``.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model; got {d_model}.")
    half = d_model // 2
    inv_freq = base ** (-np.arange(half, dtype=np.float64) / half)
    angles = np.arange(length, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1).astype(np.float32)


class LearnedPositions(nnx.Module):
    """A trainable table ``[max_len, d_model]``; ``positions: int [...] -> [..., d_model]``."""

    def __init__(self, max_len: int, d_model: int, *, rngs: nnx.Rngs):
        self.max_len = max_len
        self.table = nnx.Param(jax.random.normal(rngs.params(), (max_len, d_model)) * 0.02)

    def __call__(self, positions: jax.Array) -> jax.Array:
        return jnp.take(self.table[...], positions, axis=0)


def rope_angles(positions: jax.Array, head_dim: int, base: float = 10000.0):
    """``(cos, sin)``, each float32 ``[*positions.shape, head_dim // 2]``."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim; got {head_dim}.")
    half = head_dim // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotate feature pairs ``(j, j + head_dim/2)`` of ``x`` by ``position * base**(-2j/d)``.

    Args:
      x: ``[batch, seq, heads, head_dim]`` queries or keys.
      positions: ``int [seq]`` or ``[batch, seq]``, the absolute position of each token.

    A rotation preserves each head vector's norm, and ``<R(p) q, R(s) k>`` depends on
    ``p - s`` only: the attention scores see relative positions (Su et al., 2021).
    """
    cos, sin = rope_angles(positions, x.shape[-1], base)
    if cos.ndim == 2:  # [seq, half] -> broadcast over batch
        cos, sin = cos[None], sin[None]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # [batch, seq, 1, half]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


def alibi_slopes(num_heads: int) -> np.ndarray:
    """Per-head slopes float32 ``[num_heads]``: the geometric sequence ``2**(-8/n * (1..n))``.

    For a head count that is not a power of two, take the slopes of the next lower power of
    two and fill up with every other slope of the next higher one (Press et al., 2022).
    """

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two(lower)
    if lower < num_heads:
        slopes += power_of_two(2 * lower)[0::2][: num_heads - lower]
    return np.asarray(slopes, dtype=np.float32)


def alibi_bias(slopes: jax.Array, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
    """Logit bias float32 ``[heads, q_len, k_len] = -slope_h * |q_pos - k_pos|``.

    Under a causal mask only ``k_pos <= q_pos`` remains, where this is the paper's
    ``slope * (k_pos - q_pos)``; the symmetric form also serves bidirectional encoders.
    """
    distance = jnp.abs(q_positions[:, None] - k_positions[None, :]).astype(jnp.float32)
    return -jnp.asarray(slopes, jnp.float32)[:, None, None] * distance[None]
