"""The monitors the training loop runs, switched on from ``config.monitor``.

=========================  =====================================================
``skip_nonfinite``         drop NaN/inf steps (``optax.apply_if_finite``), name the
                           first offending layer in ``events.jsonl`` and the log
``spike_threshold``        > 1 turns on loss-spike rollback: a step loss above
                           threshold x the median of the last ``spike_window``
                           losses (and above it by ``spike_min_excess`` nats)
                           restores the last checkpoint and multiplies the
                           learning rate by ``lr_backoff`` (at most ``max_rollbacks``)
``dynamics_every``         per-layer gradient/update/activation statistics every N
                           steps (``dynamics.jsonl``, TensorBoard, ``dynamics.png``)
``inject_nan_steps``,      fault injection for exercising the detectors: NaN or
``inject_spike_steps``     x1000 inputs at these steps
=========================  =====================================================

The recompilation guard needs no switch: the train step warns whenever it is traced again.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdl.monitor.dynamics import DynamicsMonitor, diagnose_run, plot_dynamics
from jaxdl.monitor.instability import (
    SpikeDetector,
    inject_faults,
    locate_nonfinite,
    lr_backoff,
    set_backoff_factor,
)
from jaxdl.monitor.reproducibility import params_fingerprint
from jaxdl.registry import ConfigError

log = logging.getLogger(__name__)
EVENTS_FILE = "events.jsonl"
def validate_monitor(config: ml_collections.ConfigDict) -> None:
    """ConfigError naming the field for inconsistent monitor settings."""
    m = config.monitor
    if m.spike_threshold and not m.spike_threshold > 1:
        raise ConfigError(f"config.monitor.spike_threshold={m.spike_threshold}: expected 0 "
                          "(off) or a factor > 1.")
    if m.spike_threshold:
        if not 0 < m.lr_backoff <= 1:
            raise ConfigError(f"config.monitor.lr_backoff={m.lr_backoff}: expected 0 < v <= 1.")
        if not config.checkpoint_every or config.checkpoint_every % config.log_every:
            raise ConfigError(
                f"config.checkpoint_every={config.checkpoint_every}: spike rollback needs "
                f"checkpoints at multiples of config.log_every={config.log_every}, so every "
                "checkpoint is saved after its steps were checked.")
        if m.spike_min_excess < 0:
            raise ConfigError(f"config.monitor.spike_min_excess={m.spike_min_excess}: expected "
                              ">= 0.")
        if m.spike_window < 10:
            raise ConfigError(f"config.monitor.spike_window={m.spike_window}: expected >= 10.")
    for key in ("dynamics_every", "max_rollbacks", "max_nonfinite"):
        if not isinstance(m[key], int) or m[key] < 0:
            raise ConfigError(f"config.monitor.{key}={m[key]!r}: expected an integer >= 0.")


def wrap_optimizer(tx: optax.GradientTransformation,
                   monitor: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Add the learning-rate back-off factor and the non-finite guard as configured."""
    if monitor.spike_threshold:
        tx = optax.chain(tx, lr_backoff())
    if monitor.skip_nonfinite:
        tx = optax.apply_if_finite(tx, max_consecutive_errors=monitor.max_nonfinite)
    return tx


class Monitors:
    """Host-side state of the monitors for one run of the loop."""

    def __init__(self, config: ml_collections.ConfigDict, graphdef: Any,
                 workdir: pathlib.Path, *, tensorboard: Any, resume_step: int | None):
        self.config, self.m, self.graphdef, self.workdir = config, config.monitor, graphdef, \
            workdir
        self.recent: dict[int, Any] = {}  # host batches of the current log window
        self.rollbacks = 0
        self.injected: set[int] = set()
        self.spikes = SpikeDetector(self.m.spike_threshold, self.m.spike_window,
                                    min_excess=self.m.spike_min_excess) \
            if self.m.spike_threshold else None
        self.dynamics = DynamicsMonitor(graphdef, workdir, tensorboard=tensorboard,
                                        resume_step=resume_step) \
            if self.m.dynamics_every else None
        if resume_step is None:
            (workdir / EVENTS_FILE).write_text("")

    def prepare(self, step: int, batch: dict[str, Any]) -> dict[str, Any]:
        """Fault injection, and keep the host batch while its window is unchecked."""
        if (self.m.inject_nan_steps or self.m.inject_spike_steps) and step not in self.injected:
            # Once per step number: a rolled-back run replays steps, but with fresh data.
            self.injected.add(step)
            batch = inject_faults(batch, step, nan_steps=tuple(self.m.inject_nan_steps),
                                  spike_steps=tuple(self.m.inject_spike_steps))
        if self.m.skip_nonfinite:
            self.recent[step] = batch
        return batch

    def wants_dynamics(self, step: int) -> bool:
        return bool(self.dynamics) and step % self.m.dynamics_every == 0

    def record_dynamics(self, step: int, before: Any, state: Any, batch: Any) -> None:
        update = jax.tree.map(jnp.subtract, state.params, before)
        self.dynamics.record(step, state.params, state.model_state, batch, update)

    def event(self, step: int, kind: str, **fields: Any) -> None:
        record = {"step": int(step), "event": kind, **fields}
        with open(self.workdir / EVENTS_FILE, "a") as file:
            file.write(json.dumps(record, default=float) + "\n")

    def check_window(self, losses: list[tuple[int, float]], state: Any) -> int | None:
        """Report non-finite steps; return a spiking step to roll back from, or None."""
        for step, loss in losses:
            if not math.isfinite(loss) and self.m.skip_nonfinite:
                where = locate_nonfinite(self.graphdef, state.params, state.model_state,
                                         self.recent[step])
                log.warning("step %d: non-finite loss %s, step skipped; first non-finite "
                            "value at: %s", step, loss, where)
                self.event(step, "nonfinite_skipped", loss=str(loss), first_offender=where)
        self.recent.clear()
        if self.spikes is None:
            return None
        spike = self.spikes.check(losses)
        if spike is not None and self.rollbacks >= self.m.max_rollbacks:
            log.warning("step %d: loss spike, but max_rollbacks=%d already used; continuing.",
                        spike, self.m.max_rollbacks)
            self.event(spike, "spike_ignored")
            return None
        return spike

    def after_rollback(self, spike_step: int, restored_step: int, state: Any,
                       factor_before: float, loss: float) -> Any:
        """Give the restored state ``factor_before * lr_backoff`` and log the rollback."""
        self.rollbacks += 1
        factor = factor_before * self.m.lr_backoff
        log.warning("step %d: loss spike (%.4g); rolled back to step %d, learning rate x%g",
                    spike_step, loss, restored_step, factor)
        self.event(spike_step, "spike_rollback", loss=loss, restored_step=restored_step,
                   lr_factor=factor, restored_params_sha256=params_fingerprint(state.params))
        return state.replace(opt_state=set_backoff_factor(state.opt_state, factor))

    def finish(self, params: Any, plots: bool) -> None:
        if self.dynamics is None:
            return
        verdict = diagnose_run(self.workdir)
        (self.workdir / "diagnosis.txt").write_text(verdict + "\n")
        log.info("gradient diagnosis: %s", verdict)
        if plots:
            plot_dynamics(self.workdir, params=params)
