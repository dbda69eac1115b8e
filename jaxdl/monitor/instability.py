"""Instability handling: skip non-finite steps, roll back loss spikes, guard recompilation.

* **Non-finite steps.** ``optax.apply_if_finite`` wraps the optimizer (the step's update
  is dropped and the optimizer state kept when any gradient is NaN/inf), so a bad batch
  costs one step instead of the run. The loop then names the first layer, in execution
  order, whose activation or gradient went non-finite on that batch
  (:func:`locate_nonfinite`, from :func:`jaxdl.autodiff.gradient_flow`).
* **Loss spikes.** :class:`SpikeDetector` flags a step whose loss exceeds ``threshold`` x
  the median of the recent finite losses (a robust baseline that a single spike does not
  move) and that median plus ``min_excess`` nats. The loop restores the last checkpoint
  -- saved only after its window was checked, so it predates the spike -- and lowers the
  learning rate through :func:`lr_backoff`, a transformation whose factor lives in the
  optimizer state, so changing it needs no
  recompilation (as large-scale runs restart before a spike with a lower rate and fresh
  data; Chowdhery et al., 2022, sec. 5.1).
* **Recompilation.** :class:`TraceCounter` counts how often a jitted function was traced;
  more than once means shapes, dtypes or static arguments changed, i.e. every such step
  pays a full compile (the idea of Equinox's ``assert_max_traces``).
* **Fault injection** (:func:`inject_faults`): NaN or scaled inputs at chosen steps, so the
  detectors can be exercised from a config.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

log = logging.getLogger(__name__)


class BackoffState(NamedTuple):
    factor: jax.Array  # scalar float32, multiplies every update


def lr_backoff() -> optax.GradientTransformation:
    """Multiply updates by a factor kept in the state (initially 1).

    Placed last in a chain it scales the effective learning rate of SGD, momentum, Adam(W)
    and every optimizer whose update is ``-lr * direction``; :func:`set_backoff_factor`
    changes it between steps without recompiling.
    """

    def init(params):
        del params
        return BackoffState(jnp.ones((), jnp.float32))

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: u * state.factor.astype(u.dtype), updates), state

    return optax.GradientTransformation(init, update)


def _is_backoff(node: Any) -> bool:
    return isinstance(node, BackoffState)


def backoff_factor(opt_state: Any) -> float:
    """The current factor of the (single) :func:`lr_backoff` state in ``opt_state``."""
    found = [n for n in jax.tree.leaves(opt_state, is_leaf=_is_backoff) if _is_backoff(n)]
    if len(found) != 1:
        raise ValueError(f"opt_state: expected exactly one lr_backoff state, found {len(found)}.")
    return float(found[0].factor)


def set_backoff_factor(opt_state: Any, factor: float) -> Any:
    """``opt_state`` with the :func:`lr_backoff` factor replaced (same sharding/dtype)."""
    def replace(node):
        if _is_backoff(node):
            return BackoffState(jnp.full_like(node.factor, factor))
        return node

    return jax.tree.map(replace, opt_state, is_leaf=_is_backoff)


def nonfinite_count(opt_state: Any) -> int:
    """Total steps skipped by ``optax.apply_if_finite`` so far (0 if it is not in use)."""
    states = [n for n in jax.tree.leaves(opt_state, is_leaf=_is_apply_if_finite)
              if _is_apply_if_finite(n)]
    return int(sum(int(s.total_notfinite) for s in states))


def _is_apply_if_finite(node: Any) -> bool:
    return isinstance(node, optax.ApplyIfFiniteState)


class SpikeDetector:
    """Flags ``loss > threshold * m`` and ``loss > m + min_excess``, ``m`` the median of the
    last ``window`` finite losses.

    The absolute margin keeps ordinary minibatch noise late in training (losses near 0,
    where a factor of a few is a few hundredths of a nat) from counting as spikes. Needs
    ``min_history`` losses before it judges; non-finite losses are left to the non-finite
    guard.
    """

    def __init__(self, threshold: float, window: int = 50, min_history: int = 10,
                 min_excess: float = 0.5):
        if not threshold > 1.0:
            raise ValueError(f"monitor.spike_threshold={threshold}: expected > 1 (0 = off).")
        if window < min_history or min_history < 1:
            raise ValueError(f"monitor.spike_window={window}: expected >= {min_history}.")
        if min_excess < 0:
            raise ValueError(f"monitor.spike_min_excess={min_excess}: expected >= 0.")
        self.threshold, self.min_history, self.min_excess = threshold, min_history, min_excess
        self.history: collections.deque[float] = collections.deque(maxlen=window)

    def check(self, losses: list[tuple[int, float]]) -> int | None:
        """Feed ``[(step, loss), ...]`` in order; the first spiking step, or None."""
        for step, loss in losses:
            if not math.isfinite(loss):
                continue
            if len(self.history) >= self.min_history:
                baseline = float(np.median(self.history))
                if loss > self.threshold * baseline and loss > baseline + self.min_excess:
                    return step
            self.history.append(loss)
        return None

    def reset(self) -> None:
        self.history.clear()


def locate_nonfinite(graphdef: Any, params: Any, model_state: Any,
                     batch: dict[str, Any]) -> str:
    """The first place, in execution order, where a batch produces NaN/inf: ``"input"``,
    a layer's activation or its parameters' gradient (``"layers/2 (gradient)"``), or
    ``"loss"``; ``"none"`` if everything is finite."""
    from jaxdl.autodiff.gradient_flow import gradient_flow

    if not np.all(np.isfinite(np.asarray(batch["x"], np.float64))):
        return "input"
    report = jax.jit(functools.partial(gradient_flow, graphdef))(params, model_state,
                                                                 dict(batch))
    for layer in report:
        if not (math.isfinite(float(layer.activation_norm))
                and math.isfinite(float(layer.param_norm))):
            return f"{layer.name} (activation)"
    for layer in reversed(report):  # gradients flow backwards: the last layer is first
        if not math.isfinite(float(layer.param_grad_norm)):
            return f"{layer.name} (gradient)"
    return "none"


class TraceCounter:
    """Wrap a function to count its traces under ``jax.jit`` and warn past ``max_traces``."""

    def __init__(self, fn: Callable, name: str, max_traces: int = 1):
        self.fn, self.name, self.max_traces, self.count = fn, name, max_traces, 0
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        self.count += 1  # runs only while tracing: a compiled call never reaches Python
        if self.count > self.max_traces:
            log.warning("%s traced %d times (expected at most %d): an input shape, dtype or "
                        "static argument changed, so XLA recompiles.", self.name, self.count,
                        self.max_traces)
        return self.fn(*args, **kwargs)


def inject_faults(batch: dict[str, np.ndarray], step: int, *, nan_steps=(),
                  spike_steps=(), spike_scale: float = 1e3) -> dict[str, np.ndarray]:
    """Host batch with ``x`` set to NaN at ``nan_steps`` or multiplied by ``spike_scale`` at
    ``spike_steps`` (for exercising the detectors); unchanged otherwise."""
    if step in nan_steps:
        return {**batch, "x": np.full_like(batch["x"], np.nan)}
    if step in spike_steps:
        return {**batch, "x": np.asarray(batch["x"]) * spike_scale}
    return batch
