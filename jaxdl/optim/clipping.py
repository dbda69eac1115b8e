"""Gradient clipping variants and gradient accumulation as optax transformations.

* global norm (Pascanu, Mikolov & Bengio, 2013): scale all gradients by
  ``min(1, c / ||g||)`` with ``||g||`` over every parameter: ``optax.clip_by_global_norm``;
* per layer: the same rule applied to each parameter array on its own
  (:func:`clip_by_layer_norm`, ours: optax has no per-array norm clip);
* by value: clamp every element to ``[-c, c]``: ``optax.clip``;
* accumulation: average ``k`` micro-batch gradients before one update:
  ``optax.MultiSteps`` (its state lives in ``opt_state``, so it checkpoints).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def clip_by_layer_norm(max_norm: float) -> optax.GradientTransformation:
    """Scale each gradient array ``g`` (any shape) by ``min(1, max_norm / ||g||_2)``."""
    if max_norm <= 0:
        raise ValueError(f"max_norm={max_norm}: expected > 0.")

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params

        def clip(g):
            norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
            scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))
            return (g * scale).astype(g.dtype)

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(init, update)


def clipping_chain(*, clip_norm: float = 0.0, clip_layer_norm: float = 0.0,
                   clip_value: float = 0.0) -> list[optax.GradientTransformation]:
    """The clipping transformations that are switched on (a value of 0 switches one off),
    in the order by value, per layer, global norm."""
    chain = []
    if clip_value > 0:
        chain.append(optax.clip(clip_value))
    if clip_layer_norm > 0:
        chain.append(clip_by_layer_norm(clip_layer_norm))
    if clip_norm > 0:
        chain.append(optax.clip_by_global_norm(clip_norm))
    return chain
