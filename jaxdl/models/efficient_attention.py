"""Attention without the ``[q_len, k_len]`` matrix: blockwise (flash) and linear attention.

:func:`blockwise_attention` is the FlashAttention algorithm (Dao et al., 2022; the online
softmax of Milakov & Gimelshein, 2018; memory-efficient attention of Rabe & Staats, 2021) in
pure JAX. Queries and keys are cut into tiles; a static *schedule* lists the (query tile, key
tile) pairs that hold at least one allowed entry, so causal, sliding-window (Beltagy et al.,
2020) and block-sparse (Child et al., 2019) attention all skip the tiles they never need. One
``lax.scan`` runs over the schedule, keeping per query a running maximum ``m``, normaliser
``l`` and unnormalised output: memory is O(seq * head_dim) plus one tile. The custom VJP
stores only the output and the row log-sum-exp and recomputes each tile's probabilities in
the backward pass instead of keeping the attention matrix.

:func:`linear_attention` replaces ``exp(q.k)`` by ``phi(q).phi(k)`` with
``phi = elu + 1`` (Katharopoulos et al., 2020); causal attention then runs in chunks with a
running ``[head_dim, head_dim]`` state, linear in the sequence length. With FAVOR+ random
features (:mod:`jaxdl.models.performer`) the same code approximates softmax attention.

Layout as in :mod:`jaxdl.models.attention`: ``[batch, seq, heads, head_dim]``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MASK_VALUE = -1e30


class Tiling(NamedTuple):
    """Static description of one blockwise call (hashable, a ``custom_vjp`` static arg)."""

    pairs: tuple[tuple[int, int], ...]  # (query tile, key tile), row-major
    bq: int
    bk: int
    causal: bool
    window: int | None
    q_offset: int
    scale: float
    alibi: bool
    global_tokens: int = 0  # Longformer/BigBird global positions (first g queries and keys)


def tile_schedule(nq: int, nk: int, bq: int, bk: int, *, causal: bool, window: int | None,
                  q_offset: int, block_layout: np.ndarray | None,
                  global_tokens: int = 0) -> tuple[tuple[int, int], ...]:
    """The (query tile, key tile) pairs that hold at least one allowed (query, key) entry."""
    layout = np.ones((nq, nk), bool) if block_layout is None else np.asarray(block_layout, bool)
    if layout.shape != (nq, nk):
        raise ValueError(f"block_layout has shape {layout.shape}; expected {(nq, nk)} tiles "
                         f"of {bq} queries x {bk} keys.")
    qi, kj = np.meshgrid(np.arange(nq), np.arange(nk), indexing="ij")
    q_first, q_last = qi * bq + q_offset, (qi + 1) * bq - 1 + q_offset
    k_first, k_last = kj * bk, (kj + 1) * bk - 1
    if window is not None:
        layout &= k_last > q_first - window
        if not causal:
            layout &= k_first < q_last + window
    if global_tokens:  # tiles holding a global query row or a global key column
        layout |= (q_first < global_tokens) | (k_first < global_tokens)
    if causal:
        layout &= k_first <= q_last
    return tuple((int(a), int(b)) for a, b in zip(*np.nonzero(layout)))


def _tile_scores(tiling: Tiling, q, k, key_valid, slopes, i, j):
    """Scaled, biased scores ``[b, h, bq, bk]`` (float32) of tile (i, j) and its mask."""
    bq, bk = tiling.bq, tiling.bk
    q_t = jax.lax.dynamic_slice_in_dim(q, i * bq, bq, axis=2)
    k_t = jax.lax.dynamic_slice_in_dim(k, j * bk, bk, axis=2)
    s = jnp.einsum("bhqd,bhkd->bhqk", q_t, k_t, preferred_element_type=jnp.float32)
    s = s * tiling.scale
    qpos = i * bq + jnp.arange(bq) + tiling.q_offset
    kpos = j * bk + jnp.arange(bk)
    allowed = jax.lax.dynamic_slice_in_dim(key_valid, j * bk, bk, axis=1)[:, None, None, :]
    if tiling.causal:
        allowed = allowed & (kpos[None, :] <= qpos[:, None])
    if tiling.window is not None:
        local = kpos[None, :] > qpos[:, None] - tiling.window
        if not tiling.causal:
            local = local & (kpos[None, :] < qpos[:, None] + tiling.window)
        if tiling.global_tokens:
            g = tiling.global_tokens
            local = local | (qpos[:, None] < g) | (kpos[None, :] < g)
        allowed = allowed & local
    if tiling.alibi:
        distance = jnp.abs(qpos[:, None] - kpos[None, :]).astype(jnp.float32)
        s = s - slopes[None, :, None, None] * distance
    return jnp.where(allowed, s, MASK_VALUE), allowed


def _xs(tiling: Tiling):
    pairs = np.asarray(tiling.pairs, np.int32).reshape(-1, 2)
    return jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])


def _forward(tiling: Tiling, q, k, v, key_valid, slopes):
    b, h, tq, d = q.shape
    bq, bk = tiling.bq, tiling.bk

    def step(carry, ij):
        m, norm, acc = carry
        i, j = ij
        s, allowed = _tile_scores(tiling, q, k, key_valid, slopes, i, j)
        m_old = jax.lax.dynamic_slice_in_dim(m, i * bq, bq, axis=2)
        l_old = jax.lax.dynamic_slice_in_dim(norm, i * bq, bq, axis=2)
        a_old = jax.lax.dynamic_slice_in_dim(acc, i * bq, bq, axis=2)
        m_new = jnp.maximum(m_old, s.max(-1))
        p = jnp.where(allowed, jnp.exp(s - m_new[..., None]), 0.0)
        correction = jnp.exp(m_old - m_new)
        v_t = jax.lax.dynamic_slice_in_dim(v, j * bk, bk, axis=2)
        pv = jnp.einsum("bhqk,bhkd->bhqd", p.astype(v.dtype), v_t,
                        preferred_element_type=jnp.float32)
        l_new = l_old * correction + p.sum(-1)
        a_new = a_old * correction[..., None] + pv
        m = jax.lax.dynamic_update_slice_in_dim(m, m_new, i * bq, axis=2)
        norm = jax.lax.dynamic_update_slice_in_dim(norm, l_new, i * bq, axis=2)
        acc = jax.lax.dynamic_update_slice_in_dim(acc, a_new, i * bq, axis=2)
        return (m, norm, acc), None

    init = (jnp.full((b, h, tq), MASK_VALUE, jnp.float32), jnp.zeros((b, h, tq), jnp.float32),
            jnp.zeros((b, h, tq, d), jnp.float32))
    (m, norm, acc), _ = jax.lax.scan(step, init, _xs(tiling))
    seen = norm > 0  # rows with no allowed key output zeros
    out = jnp.where(seen[..., None], acc / jnp.where(seen, norm, 1.0)[..., None], 0.0)
    lse = jnp.where(seen, m + jnp.log(jnp.where(seen, norm, 1.0)), 0.0)
    return out.astype(q.dtype), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(tiling: Tiling, q, k, v, key_valid, slopes):
    return _forward(tiling, q, k, v, key_valid, slopes)[0]


def _flash_fwd(tiling, q, k, v, key_valid, slopes):
    out, lse = _forward(tiling, q, k, v, key_valid, slopes)
    return out, (q, k, v, key_valid, slopes, out, lse)


def _flash_bwd(tiling, residuals, d_out):
    q, k, v, key_valid, slopes, out, lse = residuals
    bq, bk = tiling.bq, tiling.bk
    d_out = d_out.astype(jnp.float32)
    delta = jnp.sum(d_out * out.astype(jnp.float32), axis=-1)  # [b, h, tq]

    def step(carry, ij):
        dq, dk, dv = carry
        i, j = ij
        s, allowed = _tile_scores(tiling, q, k, key_valid, slopes, i, j)
        lse_t = jax.lax.dynamic_slice_in_dim(lse, i * bq, bq, axis=2)
        p = jnp.where(allowed, jnp.exp(s - lse_t[..., None]), 0.0)  # recomputed probabilities
        do_t = jax.lax.dynamic_slice_in_dim(d_out, i * bq, bq, axis=2)
        q_t = jax.lax.dynamic_slice_in_dim(q, i * bq, bq, axis=2).astype(jnp.float32)
        k_t = jax.lax.dynamic_slice_in_dim(k, j * bk, bk, axis=2).astype(jnp.float32)
        v_t = jax.lax.dynamic_slice_in_dim(v, j * bk, bk, axis=2).astype(jnp.float32)
        delta_t = jax.lax.dynamic_slice_in_dim(delta, i * bq, bq, axis=2)
        dp = jnp.einsum("bhqd,bhkd->bhqk", do_t, v_t)
        ds = p * (dp - delta_t[..., None]) * tiling.scale
        dv_t = jnp.einsum("bhqk,bhqd->bhkd", p, do_t)
        dk_t = jnp.einsum("bhqk,bhqd->bhkd", ds, q_t)
        dq_t = jnp.einsum("bhqk,bhkd->bhqd", ds, k_t)

        def add(total, part, start):
            old = jax.lax.dynamic_slice_in_dim(total, start, part.shape[2], axis=2)
            return jax.lax.dynamic_update_slice_in_dim(total, old + part, start, axis=2)

        return (add(dq, dq_t, i * bq), add(dk, dk_t, j * bk), add(dv, dv_t, j * bk)), None

    init = tuple(jnp.zeros(x.shape, jnp.float32) for x in (q, k, v))
    (dq, dk, dv), _ = jax.lax.scan(step, init, _xs(tiling))
    return (dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None,
            jnp.zeros_like(slopes))


_flash.defvjp(_flash_fwd, _flash_bwd)


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool = False,
                        window: int | None = None, key_mask: jax.Array | None = None,
                        q_offset: int = 0, alibi_slopes: jax.Array | None = None,
                        block_layout: np.ndarray | None = None, block_size: int = 128,
                        scale: float | None = None, global_tokens: int = 0) -> jax.Array:
    """Exact attention in tiles of ``block_size`` queries x ``block_size`` keys.

    Args:
      q: ``[batch, q_len, heads, d]``; k, v: ``[batch, k_len, kv_heads, d]``.
      causal, window, key_mask, q_offset: the mask, as in
        :func:`jaxdl.models.attention.make_mask`.
      alibi_slopes: float ``[heads]`` for an ALiBi bias, or None.
      block_layout: bool ``[ceil(q_len / bq), ceil(k_len / bk)]`` of allowed tiles, with
        ``bq = min(block_size, q_len)`` and ``bk = min(block_size, k_len)``.
      global_tokens: the first ``global_tokens`` queries and keys escape the window
        (Longformer/BigBird global attention); not combined with ``block_layout`` here.

    Returns ``[batch, q_len, heads, d]``. Queries with no allowed key get zeros (the naive
    softmax would average all values instead).
    """
    b, tq, h, d = q.shape
    tk, hk = k.shape[1], k.shape[2]
    if h % hk:
        raise ValueError(f"query heads ({h}) must be a multiple of key/value heads ({hk}).")
    if block_size < 1:
        raise ValueError(f"model.block_size={block_size}: expected a positive integer.")
    if global_tokens and block_layout is not None:
        raise ValueError("model.global_tokens with a block_layout: use attention='naive' (the "
                         "blockwise kernel masks a scheduled tile by window and causality only).")
    bq, bk = min(block_size, tq), min(block_size, tk)
    nq, nk = -(-tq // bq), -(-tk // bk)
    tiling = Tiling(tile_schedule(nq, nk, bq, bk, causal=causal, window=window,
                                  q_offset=q_offset, block_layout=block_layout,
                                  global_tokens=global_tokens),
                    bq, bk, causal, window, q_offset,
                    float(d ** -0.5 if scale is None else scale), alibi_slopes is not None,
                    global_tokens)
    # Grouped heads share keys: repeat them (O(seq * d) memory; gradients sum back).
    k, v = (jnp.repeat(x, h // hk, axis=2) for x in (k, v))
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))  # [b, h, t, d]
    q = jnp.pad(q, ((0, 0), (0, 0), (0, nq * bq - tq), (0, 0)))
    k, v = (jnp.pad(x, ((0, 0), (0, 0), (0, nk * bk - tk), (0, 0))) for x in (k, v))
    valid = jnp.ones((b, tk), bool) if key_mask is None else key_mask.astype(bool)
    valid = jnp.pad(valid, ((0, 0), (0, nk * bk - tk)))
    slopes = jnp.zeros((h,), jnp.float32) if alibi_slopes is None else alibi_slopes
    out = _flash(tiling, q, k, v, valid, jnp.asarray(slopes, jnp.float32))
    return jnp.swapaxes(out[:, :, :tq], 1, 2)


def feature_map(x: jax.Array) -> jax.Array:
    """``phi(x) = elu(x) + 1 > 0``, the kernel feature map of Katharopoulos et al. (2020)."""
    return jax.nn.elu(x.astype(jnp.float32)) + 1.0


def linear_attention_reference(q, k, v, *, causal: bool = False, key_mask=None):
    """The quadratic form of linear attention, ``(A v) / (A 1)`` with
    ``A = phi(q) phi(k)^T`` masked: the naive implementation the fast one must match."""
    hk = k.shape[2]
    k, v = (jnp.repeat(x, q.shape[2] // hk, axis=2) for x in (k, v))
    a = jnp.einsum("bqhd,bkhd->bhqk", feature_map(q), feature_map(k))
    if causal:
        a = jnp.tril(a)
    if key_mask is not None:
        a = a * key_mask[:, None, None, :]
    out = jnp.einsum("bhqk,bkhd->bqhd", a, v.astype(jnp.float32))
    return (out / (a.sum(-1).transpose(0, 2, 1)[..., None] + 1e-6)).astype(q.dtype)


def linear_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool = False,
                     key_mask: jax.Array | None = None, chunk_size: int = 64,
                     feature_fn=None) -> jax.Array:
    """Linear attention, O(seq * d^2): ``[batch, q_len, heads, d]``.

    ``feature_fn(q, k) -> (phi(q), phi(k))``, both ``[batch, seq, heads, features]`` and
    positive; default ``elu + 1`` (:func:`feature_map`); see :mod:`jaxdl.models.performer`
    for FAVOR+ random features.

    Non-causal: ``phi(q) (phi(k)^T v) / (phi(q) sum phi(k))``. Causal: chunks of
    ``chunk_size``; inside a chunk the masked quadratic form, across chunks a running state
    ``S = sum phi(k)^T v`` and ``z = sum phi(k)`` carried by ``lax.scan``.
    """
    b, t, h, d = q.shape
    hk = k.shape[2]
    k, v = (jnp.repeat(x, h // hk, axis=2) for x in (k, v))
    if feature_fn is None:
        fq, fk = feature_map(q), feature_map(k)
    else:
        fq, fk = feature_fn(q, k)
    v = v.astype(jnp.float32)
    if key_mask is not None:
        fk = fk * key_mask[:, :, None, None]
    if not causal:
        state = jnp.einsum("bkhd,bkhe->bhde", fk, v)
        norm = jnp.einsum("bqhd,bhd->bqh", fq, fk.sum(1))
        out = jnp.einsum("bqhd,bhde->bqhe", fq, state) / (norm[..., None] + 1e-6)
        return out.astype(q.dtype)
    c = min(chunk_size, t)
    n = -(-t // c)
    pad = ((0, 0), (0, n * c - t), (0, 0), (0, 0))
    chunks = [jnp.pad(x, pad).reshape(b, n, c, h, x.shape[-1]).swapaxes(0, 1)
              for x in (fq, fk, v)]  # [n, b, c, h, d]
    tril = jnp.tril(jnp.ones((c, c), jnp.float32))

    def step(carry, chunk):
        state, z = carry  # [b, h, d, e], [b, h, d]
        cq, ck, cv = chunk
        a = jnp.einsum("bqhd,bkhd->bhqk", cq, ck) * tril
        num = jnp.einsum("bhqk,bkhe->bqhe", a, cv) + jnp.einsum("bqhd,bhde->bqhe", cq, state)
        den = a.sum(-1).transpose(0, 2, 1) + jnp.einsum("bqhd,bhd->bqh", cq, z)
        state = state + jnp.einsum("bkhd,bkhe->bhde", ck, cv)
        return (state, z + ck.sum(1)), num / (den[..., None] + 1e-6)

    m = fk.shape[-1]
    init = (jnp.zeros((b, h, m, v.shape[-1]), jnp.float32), jnp.zeros((b, h, m), jnp.float32))
    _, out = jax.lax.scan(step, init, chunks)
    out = out.swapaxes(0, 1).reshape(b, n * c, h, -1)[:, :t]
    return out.astype(q.dtype)
