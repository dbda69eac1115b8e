"""Scaled dot-product attention, its masks, and multi-head / grouped-query attention.

Layout everywhere: ``q: [batch, q_len, heads, head_dim]``, ``k, v: [batch, k_len, kv_heads,
head_dim]`` with ``heads`` a multiple of ``kv_heads``: ``kv_heads == heads`` is multi-head
attention (Vaswani et al., 2017), ``1 < kv_heads < heads`` grouped-query attention (Ainslie
et al., 2023), ``kv_heads == 1`` multi-query attention (Shazeer, 2019).

Masks are described, not materialised, by the keyword arguments of :func:`attend`
(``causal``, ``window``, ``key_mask``, ``q_offset``, ``block_layout``), so each
implementation builds only what it needs: :func:`make_mask` the dense boolean matrix for the
naive path, the blockwise kernel one tile at a time. ``q_offset`` is the key-timeline position
of query 0 (``k_len - q_len`` when new queries follow cached keys, see issue 8's KV cache).

``global_tokens = g`` makes the first ``g`` positions global (Longformer, Beltagy et al., 2020;
BigBird, Zaheer et al., 2020): they attend to every key and every query attends to them, on top
of the local (sliding-window / block-sparse) pattern; ``causal`` still applies. Attention
dropout (``dropout_rate`` with a ``dropout_key``; Vaswani et al., 2017) drops entries of the
probability matrix with inverted scaling, so the expected output is unchanged; the naive path
only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.models import efficient_attention as efficient
from jaxdl.models import fast_linear
from jaxdl.models import fused_attention as fused
from jaxdl.models.dropout import dropout_mask
from jaxdl.models.efficient_attention import MASK_VALUE  # finite: no NaN rows
from jaxdl.models.positional import alibi_bias, alibi_slopes, apply_rope

IMPLEMENTATIONS = ("naive", "blockwise", "xla", "linear")


def make_mask(q_len: int, k_len: int, *, causal: bool = False, window: int | None = None,
              key_mask: jax.Array | None = None, q_offset: int = 0,
              block_layout: np.ndarray | None = None,
              block_size: tuple[int, int] | None = None, global_tokens: int = 0) -> jax.Array:
    """Boolean ``[batch or 1, 1, q_len, k_len]``: True where query i may attend to key j.

    Args:
      causal: key position ``j <= i + q_offset`` only (no peeking at the future).
      window: sliding window of ``window`` keys: ``i + q_offset - window < j`` (and, without
        ``causal``, also ``j < i + q_offset + window``) (Beltagy et al., 2020).
      key_mask: bool ``[batch, k_len]``, False for padded keys.
      block_layout: bool ``[q_len / bq, k_len / bk]`` of allowed tiles (block-sparse
        attention, Child et al., 2019), with tile shape ``block_size = (bq, bk)``.
      global_tokens: positions ``< global_tokens`` (query or key) escape the window and the
        block layout (not ``causal`` nor ``key_mask``).
    """
    qpos = jnp.arange(q_len)[:, None] + q_offset
    kpos = jnp.arange(k_len)[None, :]
    allowed = jnp.ones((q_len, k_len), bool)
    if window is not None:
        allowed &= kpos > qpos - window
        if not causal:
            allowed &= kpos < qpos + window
    if block_layout is not None:
        bq, bk = block_size
        tiles = np.repeat(np.repeat(np.asarray(block_layout, bool), bq, 0), bk, 1)
        allowed &= jnp.asarray(tiles[:q_len, :k_len])
    if global_tokens:
        allowed |= (qpos < global_tokens) | (kpos < global_tokens)
    if causal:
        allowed &= kpos <= qpos
    allowed = allowed[None, None]
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :].astype(bool)
    return allowed


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                          mask: jax.Array | None = None, bias: jax.Array | None = None,
                          scale: float | None = None, return_weights: bool = False,
                          dropout_rate: float = 0.0, dropout_key: jax.Array | None = None):
    """``softmax(q k^T * scale + bias, masked) v``, materialising the ``[q_len, k_len]`` scores.

    Args:
      q: ``[batch, q_len, heads, d]``; k, v: ``[batch, k_len, kv_heads, d]``.
      mask: bool, broadcastable to ``[batch, heads, q_len, k_len]``.
      bias: float, broadcastable to ``[batch, heads, q_len, k_len]`` (e.g. ALiBi).
      scale: defaults to ``1 / sqrt(d)``.
      dropout_rate, dropout_key: attention dropout on the probabilities (inverted scaling);
        none without a key.

    Returns:
      ``[batch, q_len, heads, d]`` in q's dtype, and the weights ``[batch, heads, q_len,
      k_len]`` (float32, before dropout) if ``return_weights``.
    """
    b, tq, h, d = q.shape
    hk = k.shape[2]
    if h % hk:
        raise ValueError(f"query heads ({h}) must be a multiple of key/value heads ({hk}).")
    g = h // hk
    scale = d ** -0.5 if scale is None else scale
    # [batch, heads, seq, d] operands: batch dimensions leading, contraction last, which XLA's
    # CPU dot emitter handles without extra layout copies (measured 2x faster forward).
    qg = q.transpose(0, 2, 1, 3).reshape(b, hk, g, tq, d)
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    logits = fused.einsum_f32("bkgqd,bksd->bkgqs", qg, kt) * scale
    logits = logits.reshape(b, h, tq, k.shape[1])
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = jnp.where(mask, logits, MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=-1)
    dropped = weights
    if dropout_key is not None and dropout_rate > 0.0:
        dropped = weights * dropout_mask(dropout_key, dropout_rate, weights.shape, weights.dtype)
    wg = dropped.reshape(b, hk, g, tq, k.shape[1]).astype(v.dtype)
    out = fused.einsum_f32("bkgqs,bksd->bkgqd", wg, vt).reshape(b, h, tq, d)
    out = out.transpose(0, 2, 1, 3).astype(q.dtype)
    return (out, weights) if return_weights else out


def attend(q: jax.Array, k: jax.Array, v: jax.Array, *, implementation: str = "naive",
           causal: bool = False, window: int | None = None, key_mask: jax.Array | None = None,
           q_offset: int = 0, alibi: bool = False, block_layout: np.ndarray | None = None,
           block_size: int = 128, return_weights: bool = False, global_tokens: int = 0,
           dropout_rate: float = 0.0, dropout_key: jax.Array | None = None):
    """Attention by any implementation, with one mask vocabulary (see :func:`make_mask`).

    ``implementation``: "naive" (the ``[q_len, k_len]`` matrix materialised: without attention
    dropout :func:`fused.fused_attention`, the same function with a hand-written backward
    pass; with it :func:`dot_product_attention`), "blockwise" (FlashAttention
    in pure JAX, :func:`efficient.blockwise_attention`), "xla" (``jax.nn.dot_product_attention``,
    cuDNN on GPUs that support the case), "linear" (kernel-feature attention; ``causal`` and
    ``key_mask`` only). ``alibi`` adds ALiBi's per-head distance bias. ``return_weights``
    and attention dropout (``dropout_rate`` > 0 with a ``dropout_key``) need "naive".
    ``global_tokens``: the first positions are global (see the module docstring).
    """
    tq, tk, h = q.shape[1], k.shape[1], q.shape[2]
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"model.attention={implementation!r}: expected one of "
                         f"{list(IMPLEMENTATIONS)}.")
    if return_weights and implementation != "naive":
        raise ValueError("attention weights are only available from attention='naive'.")
    if dropout_key is not None and dropout_rate > 0.0 and implementation != "naive":
        raise ValueError(f"model.attention_dropout={dropout_rate} needs model.attention="
                         f"'naive'; got {implementation!r}.")
    _check_global_tokens(global_tokens)
    slopes = jnp.asarray(alibi_slopes(h)) if alibi else None
    if implementation == "blockwise":
        return efficient.blockwise_attention(
            q, k, v, causal=causal, window=window, key_mask=key_mask, q_offset=q_offset,
            alibi_slopes=slopes, block_layout=block_layout, block_size=block_size,
            global_tokens=global_tokens)
    if implementation == "linear":
        if window is not None or alibi or block_layout is not None or q_offset or global_tokens:
            raise ValueError("attention='linear' supports only causal and key padding masks.")
        return efficient.linear_attention(q, k, v, causal=causal, key_mask=key_mask)
    bias = None
    if alibi:
        positions = jnp.arange(tq) + q_offset
        bias = alibi_bias(slopes, positions, jnp.arange(tk))[None]
    if implementation == "xla":
        return xla_attention(q, k, v, causal=causal, window=window, key_mask=key_mask,
                             q_offset=q_offset, bias=bias, block_layout=block_layout,
                             block_size=block_size, global_tokens=global_tokens)
    needs_mask = causal or window is not None or key_mask is not None or block_layout is not None
    mask = make_mask(tq, tk, causal=causal, window=window, key_mask=key_mask,
                     q_offset=q_offset, block_layout=block_layout,
                     block_size=(min(block_size, tq), min(block_size, tk)),
                     global_tokens=global_tokens) if needs_mask else None
    if dropout_key is not None and dropout_rate > 0.0:
        return dot_product_attention(q, k, v, mask=mask, bias=bias,
                                     return_weights=return_weights,
                                     dropout_rate=dropout_rate, dropout_key=dropout_key)
    # the same function through a hand-written backward pass (faster on CPU; see the module)
    # causal masks: skip the keys the first half of the queries never sees (exact)
    exact_split = (causal and isinstance(q_offset, int) and q_offset >= 0
                   and key_mask is None and block_layout is None)  # static offsets only
    return fused.fused_attention(q, k, v, mask=mask, bias=bias, return_weights=return_weights,
                                 causal_offset=q_offset if exact_split else None)


def _check_global_tokens(global_tokens) -> int:
    if isinstance(global_tokens, bool) or not isinstance(global_tokens, int) or global_tokens < 0:
        raise ValueError(f"model.global_tokens={global_tokens!r}: expected an integer >= 0.")
    return global_tokens


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool = False,
                  window: int | None = None, key_mask: jax.Array | None = None,
                  q_offset: int = 0, bias: jax.Array | None = None,
                  block_layout: np.ndarray | None = None, block_size: int = 128,
                  global_tokens: int = 0) -> jax.Array:
    """``jax.nn.dot_product_attention``: XLA on CPU, cuDNN's fused kernel on GPUs where the
    case is supported (bfloat16/float16, head_dim multiple of 8). Same arguments as
    :func:`attend`; the causal and window masks go to jax natively when ``q_offset == 0``."""
    tq, tk = q.shape[1], k.shape[1]
    native = q_offset == 0 and tq == tk and not global_tokens
    mask = None
    if key_mask is not None or block_layout is not None or (not native and (causal or window)):
        mask = make_mask(tq, tk, causal=causal and not native,
                         window=None if native else window, key_mask=key_mask,
                         q_offset=q_offset, block_layout=block_layout,
                         block_size=(min(block_size, tq), min(block_size, tk)),
                         global_tokens=global_tokens)
    local = None
    if native and window is not None:
        local = (window - 1, 0 if causal else window - 1)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask,
                                        is_causal=causal and native, local_window_size=local)


class MultiHeadAttention(nnx.Module):
    """Multi-head, grouped-query or multi-query attention with optional RoPE / ALiBi.

    ``x: [batch, q_len, d_model]`` (queries), ``context: [batch, k_len, d_model]`` (keys and
    values; ``x`` itself for self-attention) ``-> [batch, q_len, d_model]``.

    The three stages are separate methods so a KV cache can sit between them:
    :meth:`project` (q, k, v with RoPE applied), :func:`attend`, :meth:`merge_heads`.
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int | None = None, *,
                 cross: bool = False, positional: str = "none", attention: str = "naive",
                 window: int | None = None, block_size: int = 128,
                 compute_dtype=jnp.float32, rngs: nnx.Rngs, global_tokens: int = 0,
                 attention_dropout: float = 0.0):
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if d_model % num_heads:
            raise ValueError(f"model.d_model={d_model} must be divisible by "
                             f"model.num_heads={num_heads}.")
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"model.num_kv_heads={num_kv_heads}: expected a divisor of "
                             f"model.num_heads={num_heads} (1 = multi-query).")
        if attention not in IMPLEMENTATIONS:
            raise ValueError(f"model.attention={attention!r}: expected one of "
                             f"{list(IMPLEMENTATIONS)}.")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = d_model // num_heads
        self.cross, self.positional, self.attention = cross, positional, attention
        self.window, self.block_size = window, block_size
        self.global_tokens = _check_global_tokens(global_tokens)
        if not 0.0 <= attention_dropout < 1.0:
            raise ValueError(f"model.attention_dropout={attention_dropout!r}: expected "
                             "0 <= value < 1.")
        if attention_dropout and attention != "naive":
            raise ValueError(f"model.attention_dropout={attention_dropout} needs "
                             f"model.attention='naive'; got {attention!r}.")
        self.attention_dropout = float(attention_dropout)
        dense = _dense_factory(compute_dtype, rngs)
        kv_features = 2 * num_kv_heads * self.head_dim
        if cross:
            self.query = dense(d_model, d_model)
            self.key_value = dense(d_model, kv_features)
        else:  # one fused projection: one large matmul instead of three
            self.qkv = dense(d_model, d_model + kv_features)
        self.out = dense(d_model, d_model)

    def project(self, x: jax.Array, context: jax.Array | None = None,
                positions: jax.Array | None = None, kv_positions: jax.Array | None = None):
        """``(q [b, q_len, heads, hd], k, v [b, k_len, kv_heads, hd])``, RoPE applied."""
        b, t, _ = x.shape
        hd, hk = self.head_dim, self.num_kv_heads
        if self.cross:
            q = self.query(x)
            kv = self.key_value(x if context is None else context)
        else:
            qkv = self.qkv(x)
            q, kv = qkv[..., : self.num_heads * hd], qkv[..., self.num_heads * hd:]
        q = q.reshape(b, t, self.num_heads, hd)
        kv = kv.reshape(b, kv.shape[1], 2, hk, hd)
        k, v = kv[:, :, 0], kv[:, :, 1]
        if self.positional == "rope":
            positions = jnp.arange(t) if positions is None else positions
            kv_positions = (positions if not self.cross else jnp.arange(k.shape[1])) \
                if kv_positions is None else kv_positions
            q, k = apply_rope(q, positions), apply_rope(k, kv_positions)
        return q, k, v

    def merge_heads(self, o: jax.Array) -> jax.Array:
        """``[batch, q_len, heads, hd] -> [batch, q_len, d_model]`` (output projection)."""
        return self.out(o.reshape(o.shape[0], o.shape[1], -1))

    def __call__(self, x: jax.Array, context: jax.Array | None = None, *,
                 causal: bool = False, key_mask: jax.Array | None = None,
                 positions: jax.Array | None = None, return_weights: bool = False,
                 dropout_key: jax.Array | None = None):
        """``dropout_key`` (training) turns on attention dropout when the module has
        ``attention_dropout > 0``; weights returned are those before dropout."""
        q, k, v = self.project(x, context, positions)
        result = attend(q, k, v, implementation="naive" if return_weights else self.attention,
                        causal=causal, window=self.window, key_mask=key_mask,
                        alibi=self.positional == "alibi", block_size=self.block_size,
                        return_weights=return_weights, global_tokens=self.global_tokens,
                        dropout_rate=self.attention_dropout, dropout_key=dropout_key)
        if return_weights:
            o, weights = result
            return self.merge_heads(o), weights
        return self.merge_heads(result)


def _dense_factory(compute_dtype, rngs: nnx.Rngs):
    """``nnx.Linear`` builder: float32 params; bfloat16 operands accumulate in float32; the
    matmul's backward pass is :func:`fast_linear.dense_dot_general`'s (same values)."""
    low = jnp.dtype(compute_dtype) != jnp.float32

    def dense(n_in: int, n_out: int) -> nnx.Linear:
        return nnx.Linear(n_in, n_out, dtype=compute_dtype if low else None,
                          preferred_element_type=jnp.float32 if low else None, rngs=rngs,
                          dot_general=fast_linear.dense_dot_general)

    return dense


class AdditiveAttention(nnx.Module):
    """Additive (MLP-scored) attention of Bahdanau et al. (2015), the dot product's precursor:
    ``score(q, k) = w . tanh(W_q q + W_k k)``.

    ``query: [batch, q_len, d_query]``, ``keys: [batch, k_len, d_key]``, ``values: [batch,
    k_len, d_value]``, ``key_mask: bool [batch, k_len]`` -> ``(context [batch, q_len,
    d_value], weights [batch, q_len, k_len])``. It costs a ``[q_len, k_len, hidden]`` tensor
    where the dot product needs ``[q_len, k_len]``.
    """

    def __init__(self, d_query: int, d_key: int, hidden: int, *, rngs: nnx.Rngs):
        self.query = nnx.Linear(d_query, hidden, use_bias=False, rngs=rngs)
        self.key = nnx.Linear(d_key, hidden, rngs=rngs)
        self.score = nnx.Linear(hidden, 1, use_bias=False, rngs=rngs)

    def __call__(self, query: jax.Array, keys: jax.Array, values: jax.Array,
                 key_mask: jax.Array | None = None):
        hidden = jnp.tanh(self.query(query)[:, :, None, :] + self.key(keys)[:, None, :, :])
        logits = self.score(hidden)[..., 0]  # [batch, q_len, k_len]
        if key_mask is not None:
            logits = jnp.where(key_mask[:, None, :], logits, MASK_VALUE)
        weights = jax.nn.softmax(logits, axis=-1)
        return jnp.einsum("bqk,bkd->bqd", weights, values), weights
