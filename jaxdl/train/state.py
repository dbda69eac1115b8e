"""``TrainState``: everything that changes during training, as one pytree of arrays."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """The state of a run; checkpointed whole, donated to every step.

    Attributes:
      step: int32 scalar, the number of updates applied so far.
      params: trainable parameters (nested dict of arrays).
      opt_state: the optax state for ``params``.
      model_state: non-trainable model variables, e.g. batch statistics.
      rng: uint32 ``[2]``-style raw key data; step ``t`` uses ``fold_in(key, t)``, so the
        randomness of a step depends only on the seed and the step, never on history.
    """

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    model_state: Any
    rng: jax.Array

    def step_key(self) -> jax.Array:
        """The PRNG key for this step's stochastic layers."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def create_train_state(
    params: Any, model_state: Any, tx: optax.GradientTransformation, key: jax.Array
) -> TrainState:
    """A fresh state at step 0 (call under ``jax.jit(out_shardings=...)`` to place it)."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        model_state=model_state,
        rng=jax.random.key_data(key),
    )
