"""Decoding strategies on next-token logits ``[batch, vocab]``, and beam search.

* :class:`Sampler`: greedy, or sampling at a ``temperature`` after top-k (Fan et al., 2018)
  and/or nucleus (top-p, Holtzman et al., 2020) filtering, applied in that order
  (temperature, top-k, top-p). It is a frozen dataclass, hence hashable: it is a static
  argument of compiled generation loops. :meth:`Sampler.log_probs` is the exact distribution
  it samples from (speculative decoding needs it).
* :func:`beam_search`: beam search with an end token and the length penalty of GNMT (Wu et
  al., 2016), ``lp(Y) = ((5 + |Y|) / 6) ** alpha``, candidates ranked by ``log P(Y) /
  lp(Y)``; finished beams stay in the beam, extended by nothing. With ``alpha = 0`` this is
  the plain log-probability beam search of :mod:`jaxdl.models.seq2seq_decoding` (which has
  no end token); with width 1 it is greedy decoding.
* :func:`beam_generate`: that beam search on the GPT KV-cache decoder
  (:mod:`jaxdl.inference.kv_cache`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.inference import kv_cache

NEG_INF = -jnp.inf


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
    """Keep the ``k`` largest logits of each row (exactly ``k``: ties broken by index),
    the rest set to ``-inf``."""
    _, index = jax.lax.top_k(logits, k)
    keep = jnp.zeros(logits.shape, bool).at[jnp.arange(logits.shape[0])[:, None], index].set(True)
    return jnp.where(keep, logits, NEG_INF)


def top_p_filter(logits: jax.Array, p: float) -> jax.Array:
    """Keep the smallest set of most likely tokens whose probability reaches ``p`` (the
    nucleus; the top token is always kept), the rest set to ``-inf``."""
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep_sorted = mass_before < p
    rows = jnp.arange(logits.shape[0])[:, None]
    keep = jnp.zeros(logits.shape, bool).at[rows, order].set(keep_sorted)
    return jnp.where(keep, logits, NEG_INF)


@dataclasses.dataclass(frozen=True)
class Sampler:
    """``sampler(logits [batch, vocab], key) -> int32 [batch]``."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"sampler.temperature={self.temperature}: expected > 0.")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"sampler.top_k={self.top_k!r}: expected an integer >= 1 or None.")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampler.top_p={self.top_p}: expected 0 < value <= 1 or None.")

    def filtered_logits(self, logits: jax.Array) -> jax.Array:
        """Logits after temperature, top-k and top-p (``-inf`` outside the allowed set)."""
        logits = logits.astype(jnp.float32)
        if self.greedy:
            best = jnp.argmax(logits, axis=-1)
            return jnp.where(jnp.arange(logits.shape[-1]) == best[:, None], 0.0, NEG_INF)
        logits = logits / self.temperature
        if self.top_k is not None:
            logits = top_k_filter(logits, min(self.top_k, logits.shape[-1]))
        if self.top_p is not None:
            logits = top_p_filter(logits, self.top_p)
        return logits

    def log_probs(self, logits: jax.Array) -> jax.Array:
        """The sampling distribution, as log-probabilities ``[batch, vocab]``."""
        return jax.nn.log_softmax(self.filtered_logits(logits), axis=-1)

    def __call__(self, logits: jax.Array, key: jax.Array) -> jax.Array:
        if self.greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, self.filtered_logits(logits)).astype(jnp.int32)


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (Wu et al., 2016, eq. 14)."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(step_fn: Callable, carry, logits: jax.Array, *, beam_width: int,
                num_tokens: int, take_rows: Callable, eos_id: int | None = None,
                alpha: float = 0.0):
    """Beam search over ``num_tokens`` steps.

    Args:
      step_fn: ``(carry, tokens int [rows]) -> (logits [rows, vocab], carry)``.
      carry: the decoder state for ``batch`` rows; ``logits``: its first next-token logits
        ``[batch, vocab]``.
      take_rows: ``(carry, rows int [n]) -> carry`` with those rows (expands and reorders
        beams; rows are batch-major, row ``b * beam_width + j`` is beam ``j`` of example b).
      eos_id: the end token (a beam that emits it is finished; later positions hold
        ``eos_id``); None: no end token.
      alpha: length-penalty exponent.

    Returns:
      ``(tokens int32 [batch, beam_width, num_tokens], scores [batch, beam_width],
      log_probs [batch, beam_width], lengths int32 [batch, beam_width])``, best first;
      ``scores = log_probs / length_penalty(lengths, alpha)``.
    """
    batch, vocab = logits.shape
    w = beam_width
    if w < 1:
        raise ValueError(f"beam_width={beam_width}: expected >= 1.")
    eos = -1 if eos_id is None else eos_id
    logp0 = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    if w > vocab:  # more beams than first tokens: the extra beams start dead (-inf)
        logp0 = jnp.pad(logp0, ((0, 0), (0, w - vocab)), constant_values=NEG_INF)
    logp, token = jax.lax.top_k(logp0, w)
    token = jnp.minimum(token, vocab - 1).astype(jnp.int32)
    tokens = jnp.zeros((batch, w, num_tokens), jnp.int32).at[:, :, 0].set(token)
    finished, lengths = token == eos, jnp.ones((batch, w), jnp.int32)
    carry = take_rows(carry, jnp.repeat(jnp.arange(batch), w))
    rows = jnp.arange(batch)[:, None]
    only_eos = jnp.where(jnp.arange(vocab) == eos, 0.0, NEG_INF)

    def body(state, t):
        carry, tokens, logp, finished, lengths, last = state
        logits, carry = step_fn(carry, last.reshape(-1))
        step = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(batch, w, vocab)
        step = jnp.where(finished[..., None], only_eos, step)
        total = logp[..., None] + step
        new_len = jnp.where(finished, lengths, lengths + 1)[..., None]
        score = total / length_penalty(new_len.astype(jnp.float32), alpha)
        _, flat = jax.lax.top_k(score.reshape(batch, w * vocab), w)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        logp = total.reshape(batch, -1)[rows, flat]
        lengths = jnp.broadcast_to(new_len, total.shape).reshape(batch, -1)[rows, flat]
        finished = finished[rows, parent] | (token == eos)
        tokens = tokens[rows, parent].at[:, :, t].set(token)
        carry = take_rows(carry, (rows * w + parent).reshape(-1))
        return (carry, tokens, logp, finished, lengths, token), None

    state = (carry, tokens, logp, finished, lengths, token)
    (_, tokens, logp, _, lengths, _), _ = jax.lax.scan(body, state, jnp.arange(1, num_tokens))
    scores = logp / length_penalty(lengths.astype(jnp.float32), alpha)
    order = jnp.argsort(-scores, axis=-1)
    pick = lambda a: jnp.take_along_axis(a, order, axis=1)  # noqa: E731
    tokens = jnp.take_along_axis(tokens, order[..., None], axis=1)
    return tokens, pick(scores), pick(logp), pick(lengths)


def cache_rows(cache: kv_cache.KVCache, rows: jax.Array) -> kv_cache.KVCache:
    """The KV cache restricted to (or repeated along) batch ``rows``."""
    return kv_cache.KVCache(cache.k[:, rows], cache.v[:, rows], cache.index, cache.pad[rows])


@functools.partial(jax.jit, static_argnames=("graphdef", "num_tokens", "beam_width", "eos_id",
                                             "alpha", "padding"))
def _beam_generate(graphdef, params, state, prompt, lengths, *, num_tokens, beam_width,
                   eos_id, alpha, padding):
    model = nnx.merge(graphdef, params, state)
    logits, cache = kv_cache.prefill(model, prompt, lengths, prompt.shape[1] + num_tokens,
                                     padding=padding)

    def step_fn(cache, tokens):
        logits, cache = kv_cache.forward(model, tokens[:, None], cache)
        return logits[:, 0], cache

    return beam_search(step_fn, cache, logits, beam_width=beam_width, num_tokens=num_tokens,
                       take_rows=cache_rows, eos_id=eos_id, alpha=alpha)


def beam_generate(graphdef, params, state, prompt, lengths=None, *, num_tokens: int,
                  beam_width: int, eos_id: int | None = None, alpha: float = 0.0,
                  padding: str = "left"):
    """Beam search continuations of ``prompt [batch, P]`` with the GPT KV-cache decoder;
    returns :func:`beam_search`'s tuple."""
    kv_cache.check_padding(padding)
    prompt = jnp.asarray(prompt, jnp.int32)
    kv_cache.check_model(nnx.merge(graphdef, params, state), prompt.shape[1] + num_tokens)
    if lengths is None:
        lengths = jnp.full((prompt.shape[0],), prompt.shape[1], jnp.int32)
    return _beam_generate(graphdef, params, state, prompt, jnp.asarray(lengths, jnp.int32),
                          num_tokens=num_tokens, beam_width=beam_width, eos_id=eos_id,
                          alpha=float(alpha), padding=padding)
