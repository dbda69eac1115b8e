"""Speculative decoding with a small draft GPT (Leviathan et al., 2023; Chen et al., 2023).

Each round, for one sequence whose KV caches hold every committed token but the last one,
``last``:

1. the draft model feeds ``last`` and then its own samples, drawing ``k`` draft tokens
   ``d_1..d_k`` from its distributions ``q_1..q_k`` (``k + 1`` one-token steps, so its cache
   also holds ``d_k`` in case all are accepted);
2. the target model runs once over the ``k + 1`` tokens ``[last, d_1..d_k]`` with its cache,
   giving ``p_1..p_{k+1}``;
3. ``d_i`` is accepted with probability ``min(1, p_i(d_i) / q_i(d_i))``, in order, until the
   first rejection at ``j``, where a token is drawn from ``norm(max(0, p_j - q_j))``; if all
   ``k`` are accepted a bonus token is drawn from ``p_{k+1}``. Each emitted token is then
   distributed exactly as under the target alone (the modified rejection sampling of both
   papers), and a round emits between 1 and ``k + 1`` tokens for one target pass;
4. both caches roll back to the accepted prefix by setting their ``index`` (fixed size:
   rejected slots are overwritten later, and never attended to before, see
   :mod:`jaxdl.inference.kv_cache`).

``p`` and ``q`` are the distributions of the same :class:`~jaxdl.inference.sampling.Sampler`
(temperature, top-k, top-p) applied to each model's logits, so the output follows the
target's *sampling* distribution. Rows of a batch are independent sequences (``jax.vmap``
of the one-row loop, a ``lax.while_loop`` over rounds), all inside one jit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.inference import kv_cache
from jaxdl.inference.sampling import Sampler


def _prefill(model, prompt, max_len):
    """Cache of ``prompt[:, :-1]`` (one row), so the last prompt token is fed next."""
    cache = kv_cache.init_cache(model, 1, max_len)
    if prompt.shape[1] > 1:
        _, cache = kv_cache.forward(model, prompt[:, :-1], cache)
    return cache


def _one_row(target, draft, prompt, key, *, num_tokens, k, sampler):
    """Generate ``num_tokens`` for one prompt ``int [P]``; returns (tokens, rounds, accepted)."""
    prompt = prompt[None]
    max_len = prompt.shape[1] + num_tokens + k + 1
    state = dict(t_cache=_prefill(target, prompt, max_len),
                 d_cache=_prefill(draft, prompt, max_len), last=prompt[0, -1],
                 out=jnp.zeros((num_tokens + k + 1,), jnp.int32),
                 count=jnp.zeros((), jnp.int32), rounds=jnp.zeros((), jnp.int32),
                 accepted=jnp.zeros((), jnp.int32), key=key)

    def draft_step(carry, key):
        cache, token = carry
        logits, cache = kv_cache.forward(draft, token[None, None], cache)
        logq = sampler.log_probs(logits[:, 0])[0]
        new = jax.random.categorical(key, logq).astype(jnp.int32)
        return (cache, new), (new, logq)

    def round_(s):
        key, k_draft, k_accept, k_extra = jax.random.split(s["key"], 4)
        start = s["t_cache"].index
        (d_cache, _), (drafts, logq) = jax.lax.scan(
            draft_step, (s["d_cache"], s["last"]), jax.random.split(k_draft, k + 1))
        drafts, q = drafts[:k], jnp.exp(logq[:k])  # [k], [k, vocab]
        fed = jnp.concatenate([s["last"][None], drafts])[None]  # [1, k + 1]
        logits, t_cache = kv_cache.forward(target, fed, s["t_cache"])
        p = jnp.exp(sampler.log_probs(logits[0]))  # [k + 1, vocab]
        rows = jnp.arange(k)
        p_d, q_d = p[rows, drafts], q[rows, drafts]
        ok = jax.random.uniform(k_accept, (k,)) * q_d < p_d
        a = jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))  # accepted prefix length
        q_pad = jnp.concatenate([q, jnp.zeros_like(q[:1])])  # position k: bonus from p
        residual = jnp.maximum(p[a] - q_pad[a], 0.0)
        residual = jnp.where(residual.sum() > 0, residual, p[a])
        extra = jax.random.categorical(k_extra, jnp.log(residual)).astype(jnp.int32)
        emitted = jnp.where(jnp.arange(k + 1) < a, jnp.concatenate([drafts, drafts[:1]]),
                            extra)
        out = jax.lax.dynamic_update_slice(s["out"], emitted, (s["count"],))
        index = start + a + 1  # roll back: keep last and the accepted drafts
        return dict(t_cache=t_cache._replace(index=index), d_cache=d_cache._replace(index=index),
                    last=extra, out=out, count=s["count"] + a + 1, rounds=s["rounds"] + 1,
                    accepted=s["accepted"] + a, key=key)

    s = jax.lax.while_loop(lambda s: s["count"] < num_tokens, round_, state)
    return s["out"][:num_tokens], s["rounds"], s["accepted"]


@functools.partial(jax.jit, static_argnames=("target_def", "draft_def", "num_tokens", "k",
                                             "sampler"))
def _speculative(target_def, target_params, target_state, draft_def, draft_params,
                 draft_state, prompt, key, *, num_tokens, k, sampler):
    target = nnx.merge(target_def, target_params, target_state)
    draft = nnx.merge(draft_def, draft_params, draft_state)
    row = functools.partial(_one_row, target, draft, num_tokens=num_tokens, k=k,
                            sampler=sampler)
    keys = jax.random.split(key, prompt.shape[0])
    if prompt.shape[0] == 1:
        tokens, rounds, accepted = row(prompt[0], keys[0])
        return tokens[None], rounds[None], accepted[None]
    return jax.vmap(row)(prompt, keys)


def speculative_generate(target, draft, prompt, *, num_tokens: int, k: int, key,
                         sampler: Sampler | None = None):
    """Sample ``num_tokens`` tokens per row of ``prompt: int [batch, P]`` (no padding).

    Args:
      target, draft: ``(graphdef, params, state)`` of two GPTs with the same vocabulary.
      k: draft tokens per round.
      sampler: the decoding distribution (default temperature 1, no filtering).

    Returns:
      ``(tokens int32 [batch, num_tokens], stats)`` with ``stats`` holding ``rounds`` and
      ``accepted`` per row (int32 ``[batch]``) and the ``acceptance_rate`` (accepted drafts
      over drafted tokens, a float).
    """
    sampler = Sampler() if sampler is None else sampler
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}: expected the number of draft tokens per round, >= 1.")
    if num_tokens < 1:
        raise ValueError(f"num_tokens={num_tokens}: expected >= 1.")
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2:
        raise ValueError(f"prompt: expected int [batch, length]; got shape {prompt.shape}.")
    models = [nnx.merge(*parts) for parts in (target, draft)]
    vocab = [m.head.out_features for m in models]
    if vocab[0] != vocab[1]:
        raise ValueError(f"draft vocabulary {vocab[1]} != target vocabulary {vocab[0]}.")
    for m in models:
        kv_cache.check_model(m, prompt.shape[1] + num_tokens + k + 1)
    tokens, rounds, accepted = _speculative(*target, *draft, prompt, key, num_tokens=num_tokens,
                                            k=k, sampler=sampler)
    rate = float(jnp.sum(accepted)) / max(float(jnp.sum(rounds)) * k, 1.0)
    return tokens, {"rounds": rounds, "accepted": accepted, "acceptance_rate": rate}
