"""Mixup (Zhang et al., 2018) and CutMix (Yun et al., 2019): train on combinations of pairs
of examples with correspondingly mixed soft targets.

``x: [batch, h, w, c]`` (mixup: any ``[batch, ...]``), ``targets: [batch, classes]``
probabilities. The batch is paired with a random permutation of itself; one mixing weight
``lam ~ Beta(alpha, alpha)`` is drawn per batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mixup(key: jax.Array, x: jax.Array, targets: jax.Array, alpha: float
          ) -> tuple[jax.Array, jax.Array]:
    """``lam * x + (1 - lam) * x[perm]`` and the same mix of targets."""
    k_lam, k_perm = jax.random.split(key)
    lam = jax.random.beta(k_lam, alpha, alpha)
    perm = jax.random.permutation(k_perm, x.shape[0])
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


def cutmix(key: jax.Array, x: jax.Array, targets: jax.Array, alpha: float
           ) -> tuple[jax.Array, jax.Array]:
    """Paste a random box of ``x[perm]`` covering about ``1 - lam`` of each image; targets
    mix by the box's exact area fraction."""
    k_lam, k_perm, k_y, k_x = jax.random.split(key, 4)
    b, h, w, _ = x.shape
    lam = jax.random.beta(k_lam, alpha, alpha)
    perm = jax.random.permutation(k_perm, b)
    cut = jnp.sqrt(1.0 - lam)
    box_h, box_w = jnp.round(cut * h).astype(jnp.int32), jnp.round(cut * w).astype(jnp.int32)
    cy = jax.random.randint(k_y, (), 0, h)
    cx = jax.random.randint(k_x, (), 0, w)
    y0, y1 = jnp.clip(cy - box_h // 2, 0, h), jnp.clip(cy + (box_h + 1) // 2, 0, h)
    x0, x1 = jnp.clip(cx - box_w // 2, 0, w), jnp.clip(cx + (box_w + 1) // 2, 0, w)
    rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    mixed = jnp.where(inside[None, :, :, None], x[perm], x)
    area = inside.mean()
    return mixed, (1 - area) * targets + area * targets[perm]
