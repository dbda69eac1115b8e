"""Learning-rate schedules by name, as optax schedules ``step -> rate``, and batch scaling.

Closed forms (``t`` the step, ``T`` = ``num_steps``, ``lr`` the peak, ``f`` = ``final_fraction``):

* ``constant``: ``lr``;
* ``step``: ``lr * decay_rate ** floor(t / decay_steps)`` (staircase decay);
* ``exponential``: ``lr * decay_rate ** (t / decay_steps)``;
* ``polynomial``: ``f lr + (lr - f lr) (1 - t/T) ** power``;
* ``linear``: ``polynomial`` with ``power = 1``;
* ``cosine``: ``f lr + (lr - f lr) (1 + cos(pi t / T)) / 2`` (Loshchilov & Hutter, 2017);
* ``warmup_cosine``: linear warm-up from 0 over ``warmup_steps`` (Goyal et al., 2017), then
  cosine decay to ``f lr`` at ``T``;
* ``one_cycle``: cosine up from ``lr / 25`` to ``lr`` over the first 30% of ``T``, then
  cosine down to ``lr / 25e4`` (Smith & Topin, 2019; optax's ``cosine_onecycle_schedule``);
* ``cyclical``: triangular cycles between ``f lr`` and ``lr``, period ``2 cycle_steps``
  (Smith, 2017);
* ``range_test``: exponential sweep from ``f lr`` to ``lr`` over ``T`` steps, for the
  learning-rate range test (:mod:`jaxdl.optim.lr_range`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax

from jaxdl.registry import ConfigError

SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear", "step", "exponential",
             "polynomial", "one_cycle", "cyclical", "range_test")
SCHEDULE_OPTIONS = ("decay_steps", "decay_rate", "power", "cycle_steps")


def triangular_schedule(low: float, high: float, cycle_steps: int) -> optax.Schedule:
    """Triangular cyclical rate (Smith, 2017): ``low`` at ``t = 0, 2c, 4c, ...``, ``high``
    at ``t = c, 3c, ...`` with ``c = cycle_steps``, linear in between."""

    def schedule(step):
        phase = jnp.asarray(step, jnp.float32) / cycle_steps
        distance = jnp.abs(jnp.mod(phase, 2.0) - 1.0)  # 1 at the ends, 0 mid-cycle
        return high - (high - low) * distance

    return schedule


def exponential_sweep(low: float, high: float, num_steps: int) -> optax.Schedule:
    """``low * (high / low) ** (t / (num_steps - 1))``: ``low`` at 0, ``high`` at the end."""

    def schedule(step):
        frac = jnp.asarray(step, jnp.float32) / max(num_steps - 1, 1)
        return low * jnp.exp(frac * math.log(high / low))

    return schedule


def make_schedule(
    name: str,
    learning_rate: float,
    num_steps: int,
    *,
    warmup_steps: int = 0,
    final_fraction: float = 0.0,
    decay_steps: int = 0,
    decay_rate: float = 0.1,
    power: float = 2.0,
    cycle_steps: int = 0,
) -> optax.Schedule:
    """Build the schedule ``name`` peaking at ``learning_rate`` over ``num_steps`` steps.

    ``decay_steps`` (step, exponential) and ``cycle_steps`` (cyclical) default to a tenth
    of ``num_steps`` when 0. Raises ConfigError naming the field for a bad value.
    """
    if name not in SCHEDULES:
        raise ConfigError(f"optimizer.schedule={name!r}: expected one of {list(SCHEDULES)}.")
    if not 0 <= warmup_steps < max(num_steps, 1):
        raise ConfigError(
            f"optimizer.warmup_steps={warmup_steps}: expected 0 <= warmup_steps < num_steps "
            f"({num_steps})."
        )
    if not 0.0 <= final_fraction <= 1.0:
        raise ConfigError(f"optimizer.final_fraction={final_fraction}: expected in [0, 1].")
    if decay_steps < 0 or cycle_steps < 0:
        raise ConfigError(f"optimizer.decay_steps={decay_steps}, cycle_steps={cycle_steps}: "
                          "expected integers >= 0 (0 = a tenth of num_steps).")
    if not 0.0 < decay_rate <= 1.0:
        raise ConfigError(f"optimizer.decay_rate={decay_rate}: expected in (0, 1].")
    if power <= 0:
        raise ConfigError(f"optimizer.power={power}: expected > 0.")
    tenth = max(num_steps // 10, 1)
    final = learning_rate * final_fraction
    if name == "constant":
        schedule = optax.constant_schedule(learning_rate)
    elif name == "cosine":
        schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=final_fraction)
    elif name == "linear":
        schedule = optax.linear_schedule(learning_rate, final, num_steps)
    elif name == "polynomial":
        schedule = optax.polynomial_schedule(learning_rate, final, power, num_steps)
    elif name == "step":
        schedule = optax.exponential_decay(learning_rate, decay_steps or tenth, decay_rate,
                                           staircase=True)
    elif name == "exponential":
        schedule = optax.exponential_decay(learning_rate, decay_steps or tenth, decay_rate)
    elif name == "one_cycle":
        return optax.cosine_onecycle_schedule(num_steps, learning_rate)
    elif name == "cyclical":
        return triangular_schedule(final, learning_rate, cycle_steps or tenth)
    elif name == "range_test":
        if final_fraction <= 0:
            raise ConfigError("optimizer.final_fraction=0 with schedule='range_test': expected "
                              "> 0, the sweep's start as a fraction of learning_rate.")
        return exponential_sweep(final, learning_rate, num_steps)
    else:
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
            decay_steps=num_steps, end_value=final)
    if warmup_steps:
        warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
        schedule = optax.join_schedules([warmup, schedule], [warmup_steps])
    return schedule


def scale_learning_rate(learning_rate: float, base_batch_size: int, batch_size: int,
                        rule: str = "linear") -> float:
    """Rescale a rate tuned at ``base_batch_size`` for ``batch_size``.

    ``linear``: ``lr * B / B0`` (Goyal et al., 2017, for SGD); ``sqrt``: ``lr * sqrt(B / B0)``
    (Krizhevsky, 2014; Hoffer et al., 2017; the usual rule for Adam-type methods).
    """
    if base_batch_size <= 0 or batch_size <= 0:
        raise ValueError(f"batch sizes must be > 0, got base_batch_size={base_batch_size}, "
                         f"batch_size={batch_size}.")
    ratio = batch_size / base_batch_size
    if rule == "linear":
        return learning_rate * ratio
    if rule == "sqrt":
        return learning_rate * math.sqrt(ratio)
    raise ValueError(f"rule={rule!r}: expected 'linear' or 'sqrt'.")
