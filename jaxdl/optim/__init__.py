"""Optimizers as optax ``GradientTransformation`` s, built by name from a config section.

``config.optimizer`` holds ``name`` plus the options every optimizer shares
(:data:`SHARED_KEYS`: the rate and its schedule, clipping, accumulation) and the chosen
optimizer's own options (e.g. ``weight_decay``, ``b1``). The result is
``optax.chain(clipping..., optimizer)``, wrapped in ``optax.MultiSteps`` when
``accumulate_steps > 1``, so our own transformations compose with optax's. Weight decay
skips 1-D parameters (biases, norm scales) by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optax

from jaxdl.optim import first_order, kfac, second_order  # noqa: F401  (registers them)
from jaxdl.optim.clipping import clip_by_layer_norm, clipping_chain
from jaxdl.optim.first_order import decay_mask
from jaxdl.optim.registry import OPTIMIZERS
from jaxdl.optim.schedules import (
    SCHEDULE_OPTIONS,
    SCHEDULES,
    make_schedule,
    scale_learning_rate,
)
from jaxdl.registry import ConfigError

SHARED_KEYS = ("learning_rate", "schedule", "warmup_steps", "final_fraction", "clip_norm",
               "clip_layer_norm", "clip_value", "accumulate_steps", *SCHEDULE_OPTIONS)


def _number(section: dict, key: str, default: float, *, integer: bool = False) -> Any:
    value = section.pop(key, default)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
        expected = "an integer" if integer else "a number"
        raise ConfigError(f"optimizer.{key}={value!r}: expected {expected} >= 0.")
    return value


def build_optimizer(
    section: Mapping[str, Any], num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Build ``(transformation, schedule)`` from ``config.optimizer``.

    With ``accumulate_steps = k > 1`` the schedule counts *updates*: ``num_steps // k`` of
    them over the run. Raises ConfigError naming the field for unknown names, unknown
    options or bad values.
    """
    section = dict(section)
    if "name" not in section:
        raise ConfigError(f"optimizer.name is missing; expected one of {OPTIMIZERS.names()}.")
    learning_rate = section.pop("learning_rate", None)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) \
            or learning_rate <= 0:
        raise ConfigError(f"optimizer.learning_rate={learning_rate!r}: expected a number > 0.")
    accumulate = _number(section, "accumulate_steps", 1, integer=True)
    if accumulate < 1:
        raise ConfigError(f"optimizer.accumulate_steps={accumulate}: expected an integer >= 1.")
    schedule_options = {k: section.pop(k) for k in SCHEDULE_OPTIONS if k in section}
    schedule = make_schedule(
        section.pop("schedule", "constant"),
        float(learning_rate),
        max(num_steps // accumulate, 1),
        warmup_steps=section.pop("warmup_steps", 0),
        final_fraction=section.pop("final_fraction", 0.0),
        **schedule_options,
    )
    clips = clipping_chain(clip_norm=_number(section, "clip_norm", 0.0),
                           clip_layer_norm=_number(section, "clip_layer_norm", 0.0),
                           clip_value=_number(section, "clip_value", 0.0))
    optimizer = OPTIMIZERS.build(section, field="optimizer", learning_rate=schedule)
    if clips:
        optimizer = optax.chain(*clips, optimizer)
    if accumulate > 1:
        optimizer = optax.MultiSteps(optimizer, every_k_schedule=accumulate)
        optimizer = optimizer.gradient_transformation()
    return optimizer, schedule


__all__ = ["OPTIMIZERS", "SCHEDULES", "SHARED_KEYS", "build_optimizer", "clip_by_layer_norm",
           "decay_mask", "make_schedule", "scale_learning_rate"]
