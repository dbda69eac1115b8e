"""Early stopping (Prechelt, 1998; Morgan & Bourlard, 1990): stop when a held-out metric has
not improved for ``patience`` evaluations and return the best parameters seen.

:class:`EarlyStopping` is host-side bookkeeping the training loop consults after each
evaluation; its state is a small JSON-able dict so a resumed run continues the count. The
best TrainState itself is kept as an orbax checkpoint by the loop (``workdir/best``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jaxdl.registry import ConfigError

DEFAULTS = {"patience": 0, "metric": "loss", "mode": "min", "min_delta": 0.0,
            "restore_best": True}


def check_early_stopping(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``config.early_stopping``; ``patience == 0`` switches it off."""
    options = {**DEFAULTS, **dict(options or {})}
    for key in options:
        if key not in DEFAULTS:
            raise ConfigError(f"unknown config key config.early_stopping.{key}; the keys "
                              f"there are {sorted(DEFAULTS)}.")
    patience = options["patience"]
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ConfigError(f"config.early_stopping.patience={patience!r}: expected an integer "
                          ">= 0 (evaluations without improvement; 0 = off).")
    if options["mode"] not in ("min", "max"):
        raise ConfigError(f"config.early_stopping.mode={options['mode']!r}: expected 'min' "
                          "or 'max'.")
    if not isinstance(options["min_delta"], (int, float)) or options["min_delta"] < 0:
        raise ConfigError(f"config.early_stopping.min_delta={options['min_delta']!r}: "
                          "expected a number >= 0.")
    if not isinstance(options["restore_best"], bool):
        raise ConfigError(f"config.early_stopping.restore_best={options['restore_best']!r}: "
                          "expected true/false.")
    if not isinstance(options["metric"], str):
        raise ConfigError(f"config.early_stopping.metric={options['metric']!r}: expected the "
                          "name of a held-out metric, e.g. 'loss' or 'accuracy'.")
    return options


@dataclasses.dataclass
class EarlyStopping:
    """Track the best value of ``metric``; ``update`` says whether it improved and whether
    to stop.

    Attributes:
      patience: evaluations without an improvement of more than ``min_delta`` before
        stopping.
      metric / mode: the held-out metric and whether lower (``min``) or higher is better.
    """

    patience: int
    metric: str = "loss"
    mode: str = "min"
    min_delta: float = 0.0
    best_value: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_step: int | None = None

    def update(self, step: int, metrics: Mapping[str, float]) -> tuple[bool, bool]:
        """Record the metrics of step ``step``; returns ``(improved, stop)``."""
        if self.metric not in metrics:
            raise ConfigError(f"config.early_stopping.metric={self.metric!r} is not a held-out "
                              f"metric; the objective reports {sorted(metrics)}.")
        value = float(metrics[self.metric])
        sign = 1.0 if self.mode == "min" else -1.0
        improved = self.best_value is None or \
            sign * (self.best_value - value) > self.min_delta
        if improved:
            self.best_value, self.best_step, self.bad_evals = value, step, 0
        else:
            self.bad_evals += 1
        stop = self.bad_evals >= self.patience
        if stop:
            self.stopped_step = step
        return improved, stop

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step,
                "bad_evals": self.bad_evals, "stopped_step": self.stopped_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("best_value", "best_step", "bad_evals", "stopped_step"):
            setattr(self, key, state.get(key))
        self.bad_evals = self.bad_evals or 0
