"""Optimizers as optax ``GradientTransformation`` s, built by name from a config section.

``config.optimizer`` holds ``name`` plus the options every optimizer shares (``schedule``,
``learning_rate``, ``warmup_steps``, ``final_fraction``, ``clip_norm``) and the chosen
optimizer's own options (e.g. ``weight_decay``, ``b1``). The result is
``optax.chain(clip_by_global_norm, optimizer)``, so our own transformations compose with
optax's. Weight decay skips 1-D parameters (biases, norm scales) by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax

from jaxdl.optim.schedules import SCHEDULES, make_schedule
from jaxdl.registry import ConfigError, Registry

OPTIMIZERS = Registry("optimizer")
SHARED_KEYS = ("learning_rate", "schedule", "warmup_steps", "final_fraction", "clip_norm")


def decay_mask(params: Any) -> Any:
    """True for parameters that get weight decay: matrices and kernels (ndim > 1)."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


@OPTIMIZERS.register("sgd")
def sgd(*, learning_rate: optax.ScalarOrSchedule, momentum: float = 0.0, nesterov: bool = False):
    """SGD, with heavy-ball (Polyak, 1964) or Nesterov (1983) momentum when ``momentum > 0``."""
    return optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)


@OPTIMIZERS.register("adam")
def adam(
    *, learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
):
    """Adam (Kingma & Ba, 2015)."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


@OPTIMIZERS.register("adamw")
def adamw(
    *,
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: float = 1e-4,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    decay_all: bool = False,
):
    """AdamW, decoupled weight decay (Loshchilov & Hutter, 2019); 1-D params not decayed."""
    mask = None if decay_all else decay_mask
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)


def build_optimizer(
    section: Mapping[str, Any], num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Build ``(transformation, schedule)`` from ``config.optimizer``.

    Raises ConfigError naming the field for unknown names, unknown options or bad values.
    """
    section = dict(section)
    if "name" not in section:
        raise ConfigError(f"optimizer.name is missing; expected one of {OPTIMIZERS.names()}.")
    learning_rate = section.pop("learning_rate", None)
    if not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
        raise ConfigError(f"optimizer.learning_rate={learning_rate!r}: expected a number > 0.")
    schedule = make_schedule(
        section.pop("schedule", "constant"),
        float(learning_rate),
        num_steps,
        warmup_steps=section.pop("warmup_steps", 0),
        final_fraction=section.pop("final_fraction", 0.0),
    )
    clip_norm = section.pop("clip_norm", 0.0)
    if clip_norm < 0:
        raise ConfigError(f"optimizer.clip_norm={clip_norm}: expected >= 0 (0 disables).")
    optimizer = OPTIMIZERS.build(section, field="optimizer", learning_rate=schedule)
    if clip_norm > 0:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    return optimizer, schedule


__all__ = ["OPTIMIZERS", "SCHEDULES", "SHARED_KEYS", "build_optimizer", "decay_mask",
           "make_schedule"]
