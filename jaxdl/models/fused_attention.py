"""Exact softmax attention with a hand-written backward pass (the fast CPU path of "naive").

``fused_attention(q, k, v, mask=..., bias=...)`` computes the same function as
:func:`jaxdl.models.attention.dot_product_attention`, ``softmax(q k^T * scale + bias,
masked) v`` (Vaswani et al., 2017), but through a ``jax.custom_jvp`` whose tangent
transposes into the textbook backward pass used by FlashAttention (Dao et al., 2022,
Algorithm 4) without tiling; forward mode keeps working. With ``P`` the probabilities,
``O = P V`` and ``dO`` the output cotangent,

    dV = P^T dO,   dP = dO V^T,   dS = P * (dP - rowsum(dO * O)),
    dQ = scale * dS K,   dK = scale * dS^T Q.

Why: XLA differentiates the softmax and the mask ``select`` as separate passes over the
``[q_len, k_len]`` matrix and keeps operands in layouts its CPU matmul library must copy;
here the backward is four batched matmuls on ``[batch, kv_heads, groups * q_len, d]``
operands and one elementwise pass. The mask is applied once in the forward pass as an
additive ``0 / -1e30`` bias (masked probabilities are exactly 0, so the backward needs no
mask). Residuals: the scaled q, k, v, the output and ``P`` (what autodiff keeps as well).
With a causal mask (``causal_offset``) the first half of the queries is computed against only
the keys it can see, skipping a quarter of the score matrix (the tile-skipping of
FlashAttention with two query tiles); the result is the same.

Layout: ``q: [batch, q_len, heads, d]``, ``k, v: [batch, k_len, kv_heads, d]`` (heads a
multiple of kv_heads: multi-head, grouped-query or multi-query attention). ``mask`` (bool)
and ``bias`` (float) broadcast to ``[batch, heads, q_len, k_len]``; the bias is treated as a
constant (no gradient flows into it: ALiBi's distance bias is one). No attention dropout
(that stays on :func:`jaxdl.models.attention.dot_product_attention`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.models.efficient_attention import MASK_VALUE  # finite: no NaN rows


def _grouped_bias(bias: jax.Array, b: int, hk: int, g: int, tq: int, tk: int) -> jax.Array:
    """``[B?, H?, tq, tk]`` (B? in {1, b}, H? in {1, hk * g}) -> ``[B?, hk or 1, g*tq or
    tq, tk]``, broadcastable against the grouped logits ``[b, hk, g * tq, tk]``."""
    bias = jnp.asarray(bias, jnp.float32)
    bias = bias.reshape((1,) * (4 - bias.ndim) + bias.shape)
    bias = jnp.broadcast_to(bias, bias.shape[:2] + (tq, tk))
    if bias.shape[1] == 1:  # same for every head: broadcast over the (group, query) rows
        return bias if g == 1 else jnp.tile(bias, (1, 1, g, 1))
    return bias.reshape(bias.shape[0], hk, g * tq, tk)


@jax.custom_jvp
def _core(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``q: [b, hk, r, d]`` (already scaled), ``k, v: [b, hk, tk, d]``, ``bias`` broadcast
    to ``[b, hk, r, tk]`` -> ``[b, hk, r, d]``."""
    return _core_fwd(q, k, v, bias)[0]


def einsum_f32(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """einsum accumulating in float32 (bfloat16 operands stay bfloat16: the fast CPU path)."""
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _core_fwd(q, k, v, bias):
    logits = einsum_f32("bhqd,bhkd->bhqk", q, k)
    if bias is not None:
        logits = logits + bias
    logits = logits - jnp.max(logits, axis=-1, keepdims=True)
    unnorm = jnp.exp(logits)
    probs = unnorm / jnp.sum(unnorm, axis=-1, keepdims=True)
    out = einsum_f32("bhqk,bhkd->bhqd", probs.astype(v.dtype), v)
    return out.astype(q.dtype), (q, k, v, probs, out)


@_core.defjvp
def _core_jvp(primals, tangents):
    """Tangent written so that its transpose (reverse mode) is the backward pass above:
    with ``dS = dq k^T + q dk^T`` and ``E = P * dS``, ``d out = E v - rowsum(E) out + P dv``
    (the softmax Jacobian ``diag(P) - P P^T`` folded into ``out = P v``). Transposing gives
    ``dS = P * (dO v^T - rowsum(dO * out))`` (the row sum over ``d``, not over keys),
    ``dq = dS k``, ``dk = dS^T q``, ``dv = P^T dO``. Forward mode (``jax.jvp``,
    ``jax.linearize``: Hessian-vector and Gauss-Newton products) works as well."""
    q, k, v, bias = primals
    dq, dk, dv, _ = tangents  # the bias is a constant
    out, (*_, probs, out_f32) = _core_fwd(q, k, v, bias)
    ds = einsum_f32("bhqd,bhkd->bhqk", dq, k) + einsum_f32("bhqd,bhkd->bhqk", q, dk)
    e = probs * ds
    d_out = (einsum_f32("bhqk,bhkd->bhqd", e.astype(v.dtype), v)
             - jnp.sum(e, axis=-1, keepdims=True) * out_f32
             + einsum_f32("bhqk,bhkd->bhqd", probs.astype(v.dtype), dv))
    return out, d_out.astype(out.dtype)


def _grouped(q, k, v, total, scale):
    """One ``_core`` call: ``q [b, tq, h, d]``, ``k, v [b, tk, hk, d]``, ``total`` (mask +
    bias) ``[B?, H?, tq, tk]`` or None -> its arguments ``(q [b, hk, g * tq, d]`` scaled,
    ``k, v [b, hk, tk, d]``, the bias grouped to match ``)``."""
    b, tq, h, d = q.shape
    tk, hk = k.shape[1], k.shape[2]
    g = h // hk
    if total is not None:
        total = _grouped_bias(total, b, hk, g, tq, tk)
    # [b, heads, seq, d] operands (batch dimensions first, contraction last); the g query
    # heads sharing a key/value head are stacked as extra query rows: one batched matmul.
    qg = (q * jnp.asarray(scale, q.dtype)).transpose(0, 2, 1, 3).reshape(b, hk, g * tq, d)
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    return qg, kt, vt, total


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                    mask: jax.Array | None = None, bias: jax.Array | None = None,
                    scale: float | None = None, return_weights: bool = False,
                    causal_offset: int | None = None):
    """``softmax(q k^T * scale + bias, masked) v`` with the hand-written derivative above.

    Args:
      q: ``[batch, q_len, heads, d]``; k, v: ``[batch, k_len, kv_heads, d]``.
      mask: bool, broadcastable to ``[batch, heads, q_len, k_len]`` (True = attend).
      bias: float, broadcastable likewise; a constant (its gradient is not computed).
      scale: defaults to ``1 / sqrt(d)``.
      causal_offset: a promise that ``mask`` lets query ``i`` see only keys ``j <= i +
        causal_offset`` and leaves no row fully masked (causal masks, optionally with a
        window or global tokens). Then the first half of the queries runs against only the
        keys it can see, skipping a quarter of the score matrix (exact, same result).

    Returns:
      ``[batch, q_len, heads, d]`` in q's dtype, and with ``return_weights`` the weights
      ``[batch, heads, q_len, k_len]`` (float32): then the same forward computation runs
      under plain autodiff (the weights may be differentiated too).
    """
    b, tq, h, d = q.shape
    tk, hk = k.shape[1], k.shape[2]
    if h % hk:
        raise ValueError(f"query heads ({h}) must be a multiple of key/value heads ({hk}).")
    scale = d ** -0.5 if scale is None else scale
    total = None if bias is None else jax.lax.stop_gradient(jnp.asarray(bias, jnp.float32))
    if mask is not None:
        mask_bias = jnp.where(mask, 0.0, MASK_VALUE).astype(jnp.float32)
        total = mask_bias if total is None else jnp.where(mask, total, MASK_VALUE)
    if total is not None:
        total = total.reshape((1,) * (4 - total.ndim) + total.shape)
        total = jnp.broadcast_to(total, total.shape[:2] + (tq, tk))
    if return_weights:
        out, (*_, weights, _) = _core_fwd(*_grouped(q, k, v, total, scale))
        out = out.reshape(b, h, tq, d).transpose(0, 2, 1, 3)
        return out, weights.reshape(b, h, tq, tk)
    half = tq // 2
    if causal_offset is not None and tq % 2 == 0 and 0 < half + causal_offset < tk:
        seen = half + causal_offset  # keys the first half of the queries can see
        pieces = [(slice(0, half), seen), (slice(half, tq), tk)]
    else:
        pieces = [(slice(0, tq), tk)]
    outs = []
    for rows, keys in pieces:
        part = None if total is None else total[:, :, rows, :keys]
        q_part = q[:, rows]
        out = _core(*_grouped(q_part, k[:, :keys], v[:, :keys], part, scale))
        outs.append(out.reshape(b, h, q_part.shape[1], d).transpose(0, 2, 1, 3))
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=1)
