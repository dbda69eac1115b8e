"""Incremental GPT decoding with a fixed-size key/value cache.

A transformer decoder recomputes nothing for past tokens if every layer keeps their keys and
values: step ``t`` then projects only the new token, appends its ``k, v`` to the cache and
attends over the cache (the "KV cache" of autoregressive transformer inference, e.g. Pope
et al., 2022). The cache here has a fixed shape, so one compiled program serves every step:

* :class:`KVCache`: ``k, v: [layers, batch, max_len, kv_heads, head_dim]`` (GQA/MQA store
  only the ``kv_heads`` the model has), ``index``: int32 scalar, the next free slot (the same
  for every row), ``pad``: int32 ``[batch]``, the number of left-padding slots of each row.
* :func:`forward` feeds ``tokens [batch, t]`` at slots ``index .. index + t - 1`` with
  ``lax.dynamic_update_slice`` (prefill: the prompt; decoding: one token; speculative
  verification: ``k + 1`` tokens) and returns their logits ``[batch, t, vocab]``.

Padding: prompts of different lengths are stored left-aligned (``pad`` slots first, masked
out of attention); the token in slot ``s`` of row ``i`` has position ``s - pad[i]``, so
learned/sinusoidal/RoPE positions match the unpadded sequence, and ALiBi/sliding windows,
which see slot distances, see the true distances because each row is contiguous.
Right-padded prompts are first rotated into that layout (:func:`left_align`).

Rolling back (speculative decoding) is setting ``index`` back: slots at or beyond ``index``
are never attended to before they are overwritten (causal mask with ``q_offset=index``).

All functions take a merged :class:`jaxdl.models.transformer_models.GPT` inside a trace;
:func:`generate` is the pure, jit-compiled entry ``(graphdef, params, state, ...)``: prefill,
then one ``lax.scan`` over the new tokens. Attention runs the "naive" kernel.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.attention import attend
from jaxdl.models.transformer import gelu


class KVCache(NamedTuple):
    k: jax.Array  # [layers, batch, max_len, kv_heads, head_dim]
    v: jax.Array
    index: jax.Array  # int32 scalar: next free slot
    pad: jax.Array  # int32 [batch]: left-padding slots per row


def init_cache(model, batch: int, max_len: int, pad: jax.Array | None = None,
               dtype=jnp.float32) -> KVCache:
    """An empty cache for ``model`` (a GPT) with room for ``max_len`` slots per row."""
    attn = _attention_modules(model)[0]
    shape = (model.layers.num_layers, batch, max_len, attn.num_kv_heads, attn.head_dim)
    pad = jnp.zeros((batch,), jnp.int32) if pad is None else jnp.asarray(pad, jnp.int32)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32),
                   pad)


def _attention_modules(model):
    blocks = model.layers.blocks
    if model.layers.scan_layers:
        return [blocks.self_attention]
    return [block.self_attention for block in blocks]


def check_model(model, total_len: int) -> None:
    """ValueError (before compilation) if ``model`` cannot be decoded to ``total_len``."""
    attn = _attention_modules(model)[0]
    if attn.attention == "linear":
        raise ValueError("model.attention='linear' has no KV-cache decoder here; expected one "
                         "of ['naive', 'blockwise', 'xla'].")
    positional = model.embedding.positional
    if positional in ("learned", "sinusoidal") and total_len > model.max_len:
        raise ValueError(f"prompt length + num_tokens = {total_len} exceeds the model's "
                         f"max_len={model.max_len} ({positional} positions).")


def _global_tokens(attn) -> dict:
    """Longformer-style global tokens, where the attention module has them (counted in
    slots: right for unpadded rows; with left padding they would be the pad slots)."""
    g = getattr(attn, "global_tokens", 0)
    return {"global_tokens": g} if g else {}


def _block_step(block, h, k_cache, v_cache, index, positions, key_mask):
    """One transformer block on new tokens ``h [b, t, d]``; returns ``(h, k_cache,
    v_cache)`` with the new keys/values written at ``index``."""
    attn = block.self_attention
    written = {}

    def self_attention(x):
        q, k, v = attn.project(x, positions=positions)
        kc = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, index, 0, 0))
        vc = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, index, 0, 0))
        written["k"], written["v"] = kc, vc
        o = attend(q, kc.astype(q.dtype), vc.astype(q.dtype), causal=True, window=attn.window,
                   key_mask=key_mask, q_offset=index, alibi=attn.positional == "alibi",
                   **_global_tokens(attn))
        return attn.merge_heads(o)

    h = block._residual(h, block.norm1, self_attention, None)
    h = block._residual(h, block.norm2, lambda x: block.mlp_out(gelu(block.mlp_in(x))),
                        None)
    return h, written["k"], written["v"]


def forward(model, tokens: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
    """Feed ``tokens: int [batch, t]`` at slots ``cache.index ..``; returns ``(logits [batch,
    t, vocab] float32, cache)`` with ``index`` advanced by ``t``."""
    t, max_len = tokens.shape[1], cache.k.shape[2]
    index = cache.index
    slots = index + jnp.arange(t)
    positions = jnp.maximum(slots[None, :] - cache.pad[:, None], 0)
    key_mask = jnp.arange(max_len)[None, :] >= cache.pad[:, None]
    h = model.embed(tokens, positions)
    layers = model.layers
    if layers.scan_layers:
        graphdef, state = nnx.split(layers.blocks)

        def body(h, xs):
            block_state, kc, vc = xs
            h, kc, vc = _block_step(nnx.merge(graphdef, block_state), h, kc, vc, index,
                                    positions, key_mask)
            return h, (kc, vc)

        h, (k, v) = jax.lax.scan(body, h, (state, cache.k, cache.v))
    else:
        ks, vs = [], []
        for i, block in enumerate(layers.blocks):
            h, kc, vc = _block_step(block, h, cache.k[i], cache.v[i], index, positions, key_mask)
            ks.append(kc)
            vs.append(vc)
        k, v = jnp.stack(ks), jnp.stack(vs)
    return model.logits(h), KVCache(k, v, index + t, cache.pad)


def left_align(prompt: jax.Array, lengths: jax.Array) -> jax.Array:
    """Rotate each right-padded row of ``prompt [batch, P]`` so its ``lengths[i]`` tokens
    end at column ``P - 1`` (left padding)."""
    p = prompt.shape[1]
    shift = p - lengths
    columns = (jnp.arange(p)[None, :] - shift[:, None]) % p
    return jnp.take_along_axis(prompt, columns, axis=1)


def prefill(model, prompt: jax.Array, lengths: jax.Array | None, max_len: int, *,
            padding: str = "left") -> tuple[jax.Array, KVCache]:
    """Run the prompt ``[batch, P]`` (rows of ``lengths`` real tokens, padded on the
    ``padding`` side; None = no padding) through a fresh cache of ``max_len`` slots.
    Returns the next-token logits ``[batch, vocab]`` and the cache (``index = P``)."""
    b, p = prompt.shape
    if lengths is None:
        lengths = jnp.full((b,), p, jnp.int32)
    lengths = jnp.asarray(lengths, jnp.int32)
    if padding == "right":
        prompt = left_align(prompt, lengths)
    cache = init_cache(model, b, max_len, pad=p - lengths)
    logits, cache = forward(model, prompt, cache)
    return logits[:, -1], cache


def check_padding(padding: str) -> str:
    if padding not in ("left", "right"):
        raise ValueError(f"padding={padding!r}: expected 'left' or 'right'.")
    return padding


@functools.partial(jax.jit, static_argnames=("graphdef", "num_tokens", "sampler", "padding",
                                             "use_cache"))
def _generate(graphdef, params, state, prompt, lengths, key, *, num_tokens, sampler, padding,
              use_cache):
    model = nnx.merge(graphdef, params, state)
    max_len = prompt.shape[1] + num_tokens
    logits, cache = prefill(model, prompt, lengths, max_len, padding=padding)
    keys = jax.random.split(key, num_tokens)
    first = sampler(logits, keys[0])
    if use_cache:
        def body(carry, key):
            logits, cache = forward(model, carry[0][:, None], carry[1])
            token = sampler(logits[:, 0], key)
            return (token, cache), token
    else:  # recompute every position, every step (the baseline the cache is measured against)
        buffer = jnp.zeros((prompt.shape[0], max_len), jnp.int32)
        buffer = jax.lax.dynamic_update_slice(
            buffer, left_align(prompt, lengths) if padding == "right" else prompt, (0, 0))
        cache = (buffer, cache)

        def body(carry, key):
            token, (buffer, cache) = carry
            index = cache.index
            buffer = jax.lax.dynamic_update_slice(buffer, token[:, None], (0, index))
            fresh = cache._replace(index=jnp.zeros((), jnp.int32))
            logits, _ = forward(model, buffer, fresh)
            token = sampler(jnp.take(logits, index, axis=1), key)
            return (token, (buffer, cache._replace(index=index + 1))), token

    _, rest = jax.lax.scan(body, (first, cache), keys[1:])
    return jnp.concatenate([first[:, None], rest.T], axis=1)


def generate(graphdef, params, state, prompt, lengths=None, *, num_tokens: int, key,
             sampler=None, padding: str = "left", use_cache: bool = True) -> jax.Array:
    """Sample ``num_tokens`` continuation tokens ``int32 [batch, num_tokens]``.

    Args:
      graphdef, params, state: the GPT from :func:`jaxdl.functional.split_model`.
      prompt: int ``[batch, P]``; ``lengths``: int ``[batch]`` real tokens per row (None: all
        ``P``), padded on the ``padding`` side ("left" or "right").
      sampler: a :class:`jaxdl.inference.sampling.Sampler` (hashable; default greedy).
      use_cache: False recomputes the whole sequence each step (the no-cache baseline).
    """
    from jaxdl.inference.sampling import Sampler

    sampler = Sampler(greedy=True) if sampler is None else sampler
    check_padding(padding)
    if num_tokens < 1:
        raise ValueError(f"num_tokens={num_tokens}: expected >= 1.")
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2:
        raise ValueError(f"prompt: expected int [batch, length]; got shape {prompt.shape}.")
    check_model(nnx.merge(graphdef, params, state), prompt.shape[1] + num_tokens)
    if lengths is None:
        lengths = jnp.full((prompt.shape[0],), prompt.shape[1], jnp.int32)
    return _generate(graphdef, params, state, prompt, jnp.asarray(lengths, jnp.int32), key,
                     num_tokens=num_tokens, sampler=sampler, padding=padding,
                     use_cache=use_cache)
