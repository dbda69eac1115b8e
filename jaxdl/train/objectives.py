"""Objectives: a training loss and evaluation sums, both pure ``f(params, state, batch)``.

An :class:`Objective` holds
  * ``loss(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))``, the
    function differentiated by the train step;
  * ``evaluate(params, model_state, batch) -> {name: sum}``, per-batch *sums* over the
    valid examples (``batch["mask"]``) plus ``"count"``, so evaluation over padded batches
    averages exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl import functional
from jaxdl.registry import Registry
from jaxdl.regularize import training as regularization

OBJECTIVES = Registry("loss")


class Objective(NamedTuple):
    loss: Callable[..., tuple[jax.Array, tuple[dict[str, jax.Array], Any]]]
    evaluate: Callable[..., dict[str, jax.Array]]


@OBJECTIVES.register("classification")
def classification(*, graphdef: nnx.GraphDef, label_smoothing: float = 0.0,
                   l1: float = 0.0, l2: float = 0.0, augment: dict | None = None,
                   mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                   adversarial: dict | None = None,
                   robust_eval: dict | None = None) -> Objective:
    """Softmax cross-entropy on integer labels, with optional label smoothing
    (Szegedy et al., 2016).

    Batch: ``x: [batch, ...]``, ``y: int [batch]`` or ``[batch, seq]`` (one label per
    position, e.g. next-character prediction); logits ``[..., num_classes]``.
    Metrics: ``loss`` (mean cross-entropy, nats), ``accuracy``.

    Regularizers (all off by default; ``jaxdl.regularize``), applied to each training
    batch with the step's PRNG key: ``l1``/``l2`` penalties on kernels; ``augment``, e.g.
    ``{"crop_padding": 2, "rotate_degrees": 10}``; ``mixup_alpha`` / ``cutmix_alpha``
    (one of them; images only); ``adversarial``, e.g. ``{"attack": "pgd", "epsilon": 0.1,
    "steps": 5, "fraction": 0.5}`` (adversarial training). ``robust_eval`` maps a name to
    an attack, e.g. ``{"fgsm": {"attack": "fgsm", "epsilon": 0.1}}``, and adds held-out
    metrics ``robust_accuracy_<name>``.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"loss.label_smoothing={label_smoothing}: expected 0 <= value < 1.")
    reg = regularization.check_options(l1=l1, l2=l2, augment=augment, mixup_alpha=mixup_alpha,
                                       cutmix_alpha=cutmix_alpha, adversarial=adversarial,
                                       robust_eval=robust_eval)

    def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
        logits = logits.astype(jnp.float32)
        if label_smoothing == 0.0:
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
        return optax.softmax_cross_entropy(logits, targets)

    def loss(params, model_state, batch, rng):
        if reg.training:  # any regularizer switched on: the jaxdl.regularize path
            return regularization.regularized_loss(reg, graphdef, label_smoothing, params,
                                                   model_state, batch, rng)
        logits, new_state = functional.apply(
            graphdef, params, model_state, batch["x"], train=True, rng=rng
        )
        value = cross_entropy(logits, batch["y"]).mean()
        accuracy = (logits.argmax(-1) == batch["y"]).mean()
        return value, ({"accuracy": accuracy}, new_state)

    def evaluate(params, model_state, batch):
        logits, _ = functional.apply(graphdef, params, model_state, batch["x"], train=False)
        labels = batch["y"]
        mask = batch.get("mask", jnp.ones(labels.shape[:1], jnp.float32))
        # One weight per label: the example mask broadcast over any sequence positions.
        weight = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (labels.ndim - 1)),
                                  labels.shape)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
        correct = (logits.argmax(-1) == labels).astype(jnp.float32)
        sums = {
            "loss": (nll * weight).sum(),
            "accuracy": (correct * weight).sum(),
            "count": weight.sum(),
        }
        if reg.robust_eval:
            sums.update(regularization.robust_accuracy_sums(reg, graphdef, params, model_state,
                                                           batch, weight))
        return sums

    return Objective(loss=loss, evaluate=evaluate)
