"""Per-block curvature statistics from the recorded inputs and output gradients.

Notation: ``B`` examples, a layer called ``K`` times (tied weights), output gradients ``g``
of the *per-example* loss (sampled targets for the true Fisher, or the real ones for the
empirical Fisher). Every function takes the lists of per-call inputs and output gradients.

* dense (Martens & Grosse, 2015), rows = all leading axes folded, ``a~ = [a, 1]`` with a bias:
  ``A = sum_rows a~ a~^T / (B K)``, ``G = sum_rows g g^T / B``.
* conv, KFC (Grosse & Martens, 2016) under spatial homogeneity and spatially uncorrelated
  output gradients: with ``|T|`` output positions and patches ``a_t``,
  ``A = sum_{n,t} a~ a~^T / (B |T| K)`` (a mean over positions) and
  ``G = sum_{n,t} g g^T / B`` (a sum over positions), so that ``A (x) G`` approximates
  ``E_n[vec(dW_n) vec(dW_n)^T]`` with ``dW_n = sum_t a~_t g_t^T``. With one output position
  and one example this is exact.
* embed: the dense layer ``one_hot(ids) @ E``; its ``A`` is diagonal, ``A = counts / (B K)``
  (``[vocab]``), ``G`` as for dense.
* scale_shift (per feature ``f``): ``y = x_hat * scale + shift``; the per-example gradients
  ``ds_n = sum_pos g x_hat``, ``db_n = sum_pos g`` (summed over calls) give the diagonal
  Fisher ``{"scale": mean_n ds_n^2, "shift": mean_n db_n^2}`` (``[features]`` each).

For EKFAC the dense and conv statistics also carry the rows ``a_rows [B, T, d_in (+1)]`` and
``g_rows [B, T, d_out]`` (calls concatenated along ``T``); unused, they are compiled away.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

FACTOR_KEYS = {"dense": ("A", "G"), "conv": ("A", "G"), "embed": ("A", "G"),
               "scale_shift": ("scale", "shift")}


def _per_example_rows(x: jax.Array) -> jax.Array:
    """``[B, ..., d] -> [B, T, d]`` float32."""
    return x.reshape(x.shape[0], -1, x.shape[-1]).astype(jnp.float32)


def _with_bias(a: jax.Array, has_bias: bool) -> jax.Array:
    if not has_bias:
        return a
    return jnp.concatenate([a, jnp.ones((*a.shape[:-1], 1), a.dtype)], axis=-1)


def kronecker_factors(inputs: list[jax.Array], out_grads: list[jax.Array], has_bias: bool,
                      batch_size: int, positions_mean: bool) -> dict[str, jax.Array]:
    """``{"A", "G", "a_rows", "g_rows"}`` of a dense (``positions_mean=False``) or conv
    (``True``: ``A`` averaged over the output positions) layer."""
    a_rows = jnp.concatenate([_with_bias(_per_example_rows(a), has_bias) for a in inputs], 1)
    g_rows = jnp.concatenate([_per_example_rows(g) for g in out_grads], 1)
    a_flat = a_rows.reshape(-1, a_rows.shape[-1])
    g_flat = g_rows.reshape(-1, g_rows.shape[-1])
    positions = _per_example_rows(inputs[0]).shape[1] if positions_mean else 1
    return {"A": a_flat.T @ a_flat / (batch_size * len(inputs) * positions),
            "G": g_flat.T @ g_flat / batch_size, "a_rows": a_rows, "g_rows": g_rows}


def embed_factors(ids: list[jax.Array], out_grads: list[jax.Array], vocab: int,
                  batch_size: int) -> dict[str, jax.Array]:
    """``{"A": [vocab] token counts / (B K), "G": [features, features]}``."""
    counts = jnp.zeros((vocab,), jnp.float32)
    g_sum = 0.0
    for i, g in zip(ids, out_grads):
        counts = counts.at[i.reshape(-1)].add(1.0)
        g = g.reshape(-1, g.shape[-1]).astype(jnp.float32)
        g_sum = g_sum + g.T @ g
    return {"A": counts / (batch_size * len(ids)), "G": g_sum / batch_size}


def scale_shift_factors(x_hats: list[jax.Array], out_grads: list[jax.Array],
                        has_scale: bool, has_shift: bool) -> dict[str, jax.Array]:
    """Diagonal Fisher ``{"scale": [F], "shift": [F]}`` (the keys the layer has)."""
    ds, db = 0.0, 0.0
    for x_hat, g in zip(x_hats, out_grads):
        g = _per_example_rows(g)
        ds = ds + jnp.sum(g * _per_example_rows(x_hat), axis=1)  # [B, F]
        db = db + jnp.sum(g, axis=1)
    stats = {}
    if has_scale:
        stats["scale"] = jnp.mean(jnp.square(ds), axis=0)
    if has_shift:
        stats["shift"] = jnp.mean(jnp.square(db), axis=0)
    return stats


def eigenbasis_scales(a_rows: jax.Array, g_rows: jax.Array, qa: jax.Array,
                      qg: jax.Array) -> jax.Array:
    """EKFAC (George et al., 2018): ``mean_n ((Q_A^T dW_n Q_G)_ij)^2`` ``[d_in, d_out]``, the
    diagonal of the per-example gradients' second moment in the Kronecker eigenbasis
    (``dW_n = sum_t a~_t g_t^T``)."""
    a_t = a_rows @ qa  # [B, T, d_in]
    g_t = g_rows @ qg  # [B, T, d_out]
    if a_rows.shape[1] == 1:  # one row per example: the square of an outer product
        return jnp.square(a_t[:, 0]).T @ jnp.square(g_t[:, 0]) / a_rows.shape[0]
    per_example = jnp.einsum("bti,btj->bij", a_t, g_t)
    return jnp.mean(jnp.square(per_example), axis=0)
