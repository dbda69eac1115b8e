"""Learning-rate schedules by name, as optax schedules ``step -> rate``.

``warmup_cosine``: linear warm-up then cosine decay to ``final_fraction`` of the peak
(Loshchilov & Hutter, 2017; Goyal et al., 2017 for warm-up).
"""

from __future__ import annotations

import optax

from jaxdl.registry import ConfigError

SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear")


def make_schedule(
    name: str,
    learning_rate: float,
    num_steps: int,
    *,
    warmup_steps: int = 0,
    final_fraction: float = 0.0,
) -> optax.Schedule:
    """Build the schedule ``name`` peaking at ``learning_rate`` over ``num_steps`` steps."""
    if name not in SCHEDULES:
        raise ConfigError(f"optimizer.schedule={name!r}: expected one of {list(SCHEDULES)}.")
    if not 0 <= warmup_steps < max(num_steps, 1):
        raise ConfigError(
            f"optimizer.warmup_steps={warmup_steps}: expected 0 <= warmup_steps < num_steps "
            f"({num_steps})."
        )
    final = learning_rate * final_fraction
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, num_steps, alpha=final_fraction)
    if name == "linear":
        return optax.linear_schedule(learning_rate, final, num_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=num_steps,
        end_value=final,
    )
