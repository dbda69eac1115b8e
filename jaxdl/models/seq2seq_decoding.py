"""Autoregressive decoding for any encoder-decoder: greedy and beam search.

Both take a generic *next-token function* ``step_fn(carry, tokens) -> (logits, carry)`` with
``tokens: int [batch]`` (the previous output, BOS first) and ``logits: [batch, vocab]``;
``carry`` is any pytree whose leaves have ``batch`` as leading dimension (a recurrent state,
the encoder memory, a KV cache, ...). A model that only offers a teacher-forced forward
``apply(src, decoder_input) -> logits [batch, length, vocab]`` can decode with
:func:`greedy_decode_by_recompute`, which reruns it once per output position.

Beam search keeps the ``beam_width`` highest-scoring partial outputs (sum of token
log-probabilities), as in Sutskever et al. (2014); all outputs have the same ``length``
(no end token), so no length normalization is needed. With width 1 it is greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Carry = Any
StepFn = Callable[[Carry, jax.Array], tuple[jax.Array, Carry]]


def greedy_decode(step_fn: StepFn, carry: Carry, batch: int, length: int,
                  bos: int = 0) -> jax.Array:
    """The argmax token at every step; returns int32 ``[batch, length]``."""

    def body(state, _):
        carry, token = state
        logits, carry = step_fn(carry, token)
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return (carry, token), token

    start = jnp.full((batch,), bos, jnp.int32)
    _, tokens = jax.lax.scan(body, (carry, start), None, length=length)
    return tokens.T


def beam_search(step_fn: StepFn, carry: Carry, batch: int, length: int, beam_width: int,
                bos: int = 0) -> tuple[jax.Array, jax.Array]:
    """Fixed-length beam search.

    Returns:
      ``(tokens int32 [batch, beam_width, length], scores [batch, beam_width])``, beams sorted
      best first; ``scores`` are total log-probabilities.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width={beam_width}: expected >= 1.")
    k = beam_width
    # Beams live batch-major: row b * k + j is beam j of example b.
    carry = jax.tree.map(lambda a: jnp.repeat(a, k, axis=0), carry)
    # Only beam 0 is alive at the start, so the k first expansions are distinct.
    scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, -1e9)[None], (batch, 1))
    tokens = jnp.zeros((batch, k, length), jnp.int32)
    rows = jnp.arange(batch)[:, None]

    def body(state, t):
        carry, scores, tokens, last = state
        logits, carry = step_fn(carry, last.reshape(-1))
        vocab = logits.shape[-1]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(batch, k, vocab)
        total = (scores[:, :, None] + logp).reshape(batch, k * vocab)
        scores, flat = jax.lax.top_k(total, k)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)

        def reorder(a):
            a = a.reshape(batch, k, *a.shape[1:])[rows, parent]
            return a.reshape(batch * k, *a.shape[2:])

        carry = jax.tree.map(reorder, carry)
        tokens = tokens[rows, parent].at[:, :, t].set(token)
        return (carry, scores, tokens, token), None

    start = jnp.full((batch, k), bos, jnp.int32)
    (_, scores, tokens, _), _ = jax.lax.scan(body, (carry, scores, tokens, start),
                                             jnp.arange(length))
    return tokens, scores


def greedy_decode_by_recompute(apply_fn: Callable[[jax.Array, jax.Array], jax.Array],
                               src: jax.Array, length: int, bos: int = 0) -> jax.Array:
    """Greedy decoding with only a teacher-forced forward.

    ``apply_fn(src, decoder_input [batch, length]) -> logits [batch, length, vocab]`` must be
    causal in ``decoder_input``. Step t feeds the t tokens chosen so far (after BOS) and reads
    position t: ``length`` forward passes, fine for short targets. Returns int32
    ``[batch, length]``.
    """
    batch = src.shape[0]
    buffer = jnp.full((batch, length + 1), bos, jnp.int32)

    def body(buffer, t):
        logits = apply_fn(src, buffer[:, :length])
        token = jnp.argmax(jnp.take(logits, t, axis=1), axis=-1).astype(jnp.int32)
        return jax.lax.dynamic_update_slice(buffer, token[:, None], (0, t + 1)), token

    _, tokens = jax.lax.scan(body, buffer, jnp.arange(length))
    return tokens.T
