"""Parameter-norm penalties and decoupled weight decay.

* L2 (ridge, "weight decay" when added to the loss, Krogh & Hertz, 1992):
  ``lambda / 2 * sum w^2``, gradient ``lambda * w``.
* L1 (lasso, Tibshirani, 1996): ``lambda * sum |w|``, pushes weights to exactly zero.
* Decoupled weight decay (Loshchilov & Hutter, 2019): ``w <- w - lr * lambda * w`` applied
  by the optimizer after the adaptive update, so it is *not* rescaled by Adam's
  preconditioner as an L2 gradient would be.

By default only kernels (arrays with ``ndim >= 2``) are penalized: biases and normalization
scales are left alone, as is standard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def kernels_only(params: PyTree) -> PyTree:
    """Mask pytree: True for weight matrices/kernels (``ndim >= 2``), False otherwise."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _masked_leaves(params: PyTree, mask: Callable[[PyTree], PyTree] | None):
    mask_tree = (mask or kernels_only)(params)
    return [p for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask_tree)) if m]


def l2_penalty(params: PyTree, strength: float,
               mask: Callable[[PyTree], PyTree] | None = None) -> jax.Array:
    """``strength / 2 * sum_w w^2`` over the masked leaves (default: kernels)."""
    leaves = _masked_leaves(params, mask)
    return 0.5 * strength * sum(jnp.sum(jnp.square(p.astype(jnp.float32))) for p in leaves)


def l1_penalty(params: PyTree, strength: float,
               mask: Callable[[PyTree], PyTree] | None = None) -> jax.Array:
    """``strength * sum_w |w|`` over the masked leaves (default: kernels)."""
    leaves = _masked_leaves(params, mask)
    return strength * sum(jnp.sum(jnp.abs(p.astype(jnp.float32))) for p in leaves)


def decoupled_weight_decay(rate: float, learning_rate: optax.ScalarOrSchedule,
                           mask: Callable[[PyTree], PyTree] | None = None
                           ) -> optax.GradientTransformation:
    """``updates - learning_rate * rate * params`` on the masked leaves; chain it *after*
    the base optimizer, e.g. ``optax.chain(optax.scale_by_adam(), optax.scale(-lr),
    decoupled_weight_decay(1e-4, lr))`` is AdamW."""
    if rate < 0:
        raise ValueError(f"weight decay rate={rate}: expected >= 0.")
    lr = learning_rate if callable(learning_rate) else (lambda _: learning_rate)

    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("decoupled_weight_decay needs params in update().")
        step = lr(state.count) * rate
        mask_tree = (mask or kernels_only)(params)
        updates = jax.tree.map(lambda u, p, m: u - step * p if m else u, updates, params,
                               mask_tree)
        return updates, optax.ScaleByScheduleState(count=optax.safe_int32_increment(
            state.count))

    return optax.GradientTransformation(init, update)
