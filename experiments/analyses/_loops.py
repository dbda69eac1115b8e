"""Small compiled training loops for analyses whose objective is not a registered one
(distillation, LoRA, DPO, VAE, diffusion): ``loss_fn(trainable, batch, key) -> scalar`` under
one ``jax.jit`` step, host-side batches from :class:`jaxdl.data.BatchIterator`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from jaxdl import functional
from jaxdl.data import BatchIterator
from jaxdl.models.mlp import MLP


def fit(loss_fn: Callable[[Any, dict, jax.Array], jax.Array], trainable: Any,
        tx: optax.GradientTransformation, data: dict[str, np.ndarray], *, batch_size: int,
        num_steps: int, seed: int, every: int = 0,
        callback: Callable[[int, Any], None] | None = None) -> tuple[Any, list[float]]:
    """``num_steps`` of ``tx`` on ``loss_fn``; returns the trained pytree and the losses.

    With ``every > 0``, ``callback(step, trainable)`` runs before training and after every
    ``every`` steps (one compiled step, one optimizer state throughout).
    """

    @jax.jit
    def step(trainable, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(trainable, batch, key)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, loss

    opt_state = tx.init(trainable)
    batches = BatchIterator(data, batch_size, seed=seed)
    key = jax.random.key(seed)
    losses = []
    if every and callback:
        callback(0, trainable)
    for i in range(num_steps):
        trainable, opt_state, loss = step(trainable, opt_state, next(batches),
                                          jax.random.fold_in(key, i))
        losses.append(loss)
        if every and callback and (i + 1) % every == 0:
            callback(i + 1, trainable)
    return trainable, [float(v) for v in jax.device_get(losses)]


def classifier_loss(graphdef, state):
    """Cross-entropy ``loss_fn`` for a functional classifier on ``{"x", "y"}`` batches."""

    def loss_fn(params, batch, key):
        logits, _ = functional.apply(graphdef, params, state, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    return loss_fn


def train_mlp(data: dict[str, np.ndarray], hidden: tuple[int, ...], *, num_steps: int,
              seed: int, learning_rate: float = 3e-3, batch_size: int = 64):
    """An MLP classifier on ``data`` (``x: [n, 8, 8, 1]``, ``y``); ``(graphdef, params,
    state, losses)``."""
    in_features = int(np.prod(data["x"].shape[1:]))
    graphdef, params, state = functional.split_model(
        MLP(in_features, 10, hidden, rngs=nnx.Rngs(seed)))
    params, losses = fit(classifier_loss(graphdef, state), params, optax.adam(learning_rate),
                         data, batch_size=batch_size, num_steps=num_steps, seed=seed)
    return graphdef, params, state, losses


def accuracy(graphdef, params, state, data: dict[str, np.ndarray]) -> float:
    logits, _ = jax.jit(functional.apply, static_argnums=0)(graphdef, params, state, data["x"])
    return float(np.mean(np.argmax(np.asarray(logits), -1) == data["y"]))
