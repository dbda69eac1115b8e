"""The legacy ``jax.pmap`` data-parallel step, kept thin (pmap is in maintenance mode).

The library's data parallelism is ``jax.jit`` with a batch sharded over a ``data`` mesh
axis (:mod:`jaxdl.parallel.mesh`), where XLA inserts the gradient all-reduce. This module
is the older explicit form for comparison and for code that still uses it: every device
holds a replica of the TrainState (a leading ``[devices]`` axis), runs the step on its
slice of the batch, and averages gradients, loss and metrics with ``lax.pmean`` over a
named axis (Krizhevsky, 2014 "one weird trick"; Goyal et al., 2017). With equal slices the
mean of per-device means is the global mean, so it matches the jit step.

Cross-replica BatchNorm: under jit a sharded batch's ``jnp.mean`` is already global
(:mod:`jaxdl.models.norms`); under pmap each device sees only its slice, so
:class:`CrossReplicaBatchNorm` averages the first and second moments with ``lax.pmean``
over ``axis_name`` (synchronized BN, Peng et al., 2018 "MegDet").

Differences from the jit path: each replica uses the same dropout key (the step's key), so
dropout masks repeat across device slices; the jit path draws one mask for the global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.models.norms import BatchNorm
from jaxdl.train.state import TrainState

AXIS = "replicas"


def replicate(tree: Any, num_devices: int) -> Any:
    """Host copies with a leading ``[num_devices]`` axis (pmap places one per device)."""
    return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (num_devices, *np.shape(x))),
                        tree)


def unreplicate(tree: Any) -> Any:
    """Replica 0 of a pmapped pytree."""
    return jax.tree.map(lambda x: x[0], tree)


def shard_batch(batch: dict[str, Any], num_devices: int) -> dict[str, Any]:
    """``[batch, ...] -> [devices, batch / devices, ...]``; ValueError if not divisible."""
    def split(key: str, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.shape[0] % num_devices:
            raise ValueError(f"batch[{key!r}] has {x.shape[0]} examples; expected a multiple "
                             f"of the {num_devices} devices.")
        return x.reshape(num_devices, x.shape[0] // num_devices, *x.shape[1:])

    return {k: split(k, v) for k, v in batch.items()}


def make_pmap_train_step(loss_fn: Callable[..., Any], tx: optax.GradientTransformation, *,
                         axis_name: str = AXIS, donate: bool = True):
    """``pmap``-ed ``(replicated TrainState, sharded batch) -> (state, metrics)``.

    ``loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))`` as
    for :func:`jaxdl.train.step.make_train_step`; metrics come back replicated.
    """

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, model_state)), grads = grad_fn(
            state.params, state.model_state, batch, state.step_key())
        grads, loss, metrics, model_state = jax.lax.pmean(
            (grads, loss, metrics, model_state), axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(step=state.step + 1,
                                  params=optax.apply_updates(state.params, updates),
                                  opt_state=opt_state, model_state=model_state)
        return new_state, {**metrics, "loss": loss}

    return jax.pmap(step, axis_name=axis_name, donate_argnums=(0,) if donate else ())


class CrossReplicaBatchNorm(BatchNorm):
    """BatchNorm whose training statistics are averaged over the pmap axis ``axis_name``
    (None: plain per-device BatchNorm, which under jit is already synchronized).

    ``x: [batch, ..., features] -> same shape``; other arguments as ``BatchNorm``.
    """

    def __init__(self, features: int, *, axis_name: str | None = AXIS, **kwargs: Any):
        super().__init__(features, **kwargs)
        self.axis_name = axis_name

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        if not train or self.axis_name is None:
            return super().__call__(x, train=train, rngs=rngs)
        axes = tuple(range(x.ndim - 1))
        xf = x.astype(jnp.float32)
        mean, mean_sq = jax.lax.pmean((xf.mean(axes), (xf * xf).mean(axes)), self.axis_name)
        var = jnp.maximum(mean_sq - mean * mean, 0.0)
        m = self.momentum
        self.mean[...] = m * self.mean[...] + (1 - m) * jax.lax.stop_gradient(mean)
        self.var[...] = m * self.var[...] + (1 - m) * jax.lax.stop_gradient(var)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return self.affine(y).astype(x.dtype)
