"""The regularized classification loss: augmentation, mixup/cutmix, adversarial examples and
penalties applied to one training batch, and robust accuracy for evaluation.

Used by the ``classification`` objective (``jaxdl.train.objectives``) when any of its
regularization options is set; everything is a pure function of ``(params, model_state,
batch, rng)`` traced inside the compiled train/eval step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl import functional
from jaxdl.regularize.adversarial import attack, check_attack, mix_adversarial
from jaxdl.regularize.augment import augment_batch, check_augment_options
from jaxdl.regularize.mixing import cutmix, mixup
from jaxdl.regularize.penalties import l1_penalty, l2_penalty


class RegularizationOptions(NamedTuple):
    l1: float
    l2: float
    augment: dict[str, Any]
    mixup_alpha: float
    cutmix_alpha: float
    adversarial: dict[str, Any] | None
    robust_eval: dict[str, dict[str, Any]]

    @property
    def training(self) -> bool:
        """True when the training loss differs from plain cross-entropy."""
        return bool(self.l1 or self.l2 or self.augment or self.mixup_alpha or
                    self.cutmix_alpha or self.adversarial)


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"loss.{name}={value!r}: expected a number >= 0.")
    return float(value)


def check_options(*, l1, l2, augment, mixup_alpha, cutmix_alpha, adversarial,
                  robust_eval) -> RegularizationOptions:
    """Validate the objective's regularization options (ValueError naming ``loss.<key>``)."""
    mixup_alpha = _non_negative("mixup_alpha", mixup_alpha)
    cutmix_alpha = _non_negative("cutmix_alpha", cutmix_alpha)
    if mixup_alpha and cutmix_alpha:
        raise ValueError("loss.mixup_alpha and loss.cutmix_alpha are both set; choose one.")
    robust = {}
    for name, spec in dict(robust_eval or {}).items():
        if not isinstance(spec, dict):
            raise ValueError(f"loss.robust_eval.{name}={spec!r}: expected an attack dict, "
                             "e.g. {'attack': 'fgsm', 'epsilon': 0.1}.")
        robust[str(name)] = check_attack(spec, f"loss.robust_eval.{name}")
    return RegularizationOptions(
        l1=_non_negative("l1", l1), l2=_non_negative("l2", l2),
        augment=check_augment_options(augment), mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha, adversarial=check_attack(adversarial, "loss.adversarial"),
        robust_eval=robust)


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``logits, targets: [batch, classes]`` -> per-example cross-entropy ``[batch]``."""
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def regularized_loss(reg: RegularizationOptions, graphdef: nnx.GraphDef,
                     label_smoothing: float, params, model_state, batch, rng):
    """``(loss, ({"accuracy": ...}, new_model_state))`` on the regularized batch.

    Order: augmentation -> adversarial replacement -> mixup/cutmix -> forward pass; the
    penalties are added to the mean cross-entropy. Accuracy is measured against the
    original labels on the (possibly augmented/attacked) inputs.
    """
    x, labels = batch["x"], batch["y"]
    k_aug, k_adv, k_mix, k_model = jax.random.split(rng, 4)
    num_classes = graphdef_num_classes(graphdef, params, model_state, x)
    targets = jax.nn.one_hot(labels, num_classes)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    if reg.augment:
        x = augment_batch(k_aug, x, reg.augment)
    if reg.adversarial:
        def example_losses(z):  # the model as trained now; its state updates are discarded
            logits, _ = functional.apply(graphdef, params, model_state, z, train=True,
                                         rng=k_model)
            return soft_cross_entropy(logits, targets)

        x_adv = attack(reg.adversarial, example_losses, x, k_adv)
        x = mix_adversarial(x, x_adv, reg.adversarial["fraction"])
    if reg.mixup_alpha:
        x, targets = mixup(k_mix, x, targets, reg.mixup_alpha)
    elif reg.cutmix_alpha:
        x, targets = cutmix(k_mix, x, targets, reg.cutmix_alpha)
    logits, new_state = functional.apply(graphdef, params, model_state, x, train=True,
                                         rng=k_model)
    value = soft_cross_entropy(logits, targets).mean()
    if reg.l1:
        value = value + l1_penalty(params, reg.l1)
    if reg.l2:
        value = value + l2_penalty(params, reg.l2)
    accuracy = (logits.argmax(-1) == labels).mean()
    return value, ({"accuracy": accuracy}, new_state)


def graphdef_num_classes(graphdef, params, model_state, x) -> int:
    """The model's number of outputs, from an abstract forward pass (no FLOPs)."""
    out = jax.eval_shape(lambda p, s, z: functional.apply(graphdef, p, s, z)[0], params,
                         model_state, x)
    return out.shape[-1]


def robust_accuracy_sums(reg: RegularizationOptions, graphdef, params, model_state, batch,
                         weight) -> dict[str, jax.Array]:
    """``{"robust_accuracy_<name>": sum of correct predictions on attacked inputs}``; the
    attacks use the evaluation-mode model and the true labels (PGD starts at ``x``)."""
    x, labels = batch["x"], batch["y"]

    def example_losses(z):
        logits, _ = functional.apply(graphdef, params, model_state, z, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                               labels)

    sums = {}
    for name, spec in reg.robust_eval.items():
        x_adv = attack(spec, example_losses, x, None)
        logits, _ = functional.apply(graphdef, params, model_state, x_adv, train=False)
        correct = (logits.argmax(-1) == labels).astype(jnp.float32)
        sums[f"robust_accuracy_{name}"] = (correct * weight).sum()
    return sums
