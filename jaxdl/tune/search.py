"""Hyperparameter search over experiment configs: random search, successive halving and
Hyperband, each running real trainings through the one loop.

* Random search (Bergstra & Bengio, 2012): sample configurations independently from a
  search space; with few important hyperparameters it covers each of them far better than
  a grid of the same size.
* Successive halving (Jamieson & Talwalkar, 2016): train ``n`` configurations for a small
  budget, keep the best ``1/eta``, multiply their budget by ``eta``, repeat.
* Hyperband (Li, Jamieson, DeSalvo, Rostamizadeh & Talwalkar, 2018): several successive-
  halving brackets that trade the number of configurations against the starting budget, so
  no single guess of "how early can we judge" has to be right.

A *space* maps dotted config keys to distributions::

    {"optimizer.learning_rate": ("log_uniform", 1e-4, 1e-1),
     "model.hidden": ("choice", [(64,), (128,)]),
     "batch_size": ("int", 32, 128)}

An *objective* is ``objective(overrides, budget, trial_id) -> score`` (lower is better);
:func:`training_objective` makes one that trains ``base_config`` with the overrides for
``budget`` steps and returns a held-out metric. Trials keep their workdir, so when a
configuration is promoted the loop resumes from its checkpoint instead of starting over
(exact continuation for step-independent schedules such as ``constant``).
"""

from __future__ import annotations

import copy
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdl.registry import ConfigError

Space = Mapping[str, tuple]
Objective = Callable[[dict[str, Any], int, int], float]
DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")


class Trial(NamedTuple):
    trial_id: int
    overrides: dict[str, Any]
    budget: int
    score: float
    rung: int = 0


def check_space(space: Space) -> None:
    """ConfigError naming the key for an unknown distribution or bad bounds."""
    if not space:
        raise ConfigError("space: expected at least one hyperparameter.")
    for key, spec in space.items():
        kind = spec[0] if isinstance(spec, tuple) and spec else None
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"space[{key!r}]={spec!r}: expected (kind, ...) with kind in "
                              f"{DISTRIBUTIONS}.")
        if kind == "choice":
            if len(spec) != 2 or not list(spec[1]):
                raise ConfigError(f"space[{key!r}]: expected ('choice', [values, ...]).")
            continue
        if len(spec) != 3 or not spec[1] < spec[2]:
            raise ConfigError(f"space[{key!r}]={spec!r}: expected ({kind!r}, low, high) with "
                              "low < high.")
        if kind == "log_uniform" and spec[1] <= 0:
            raise ConfigError(f"space[{key!r}]: log_uniform needs low > 0, got {spec[1]}.")


def sample(space: Space, rng: np.random.Generator) -> dict[str, Any]:
    """One configuration: ``{dotted key: value}`` drawn from ``space``."""
    values = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "uniform":
            values[key] = float(rng.uniform(spec[1], spec[2]))
        elif kind == "log_uniform":
            values[key] = float(math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2]))))
        elif kind == "int":
            values[key] = int(rng.integers(spec[1], spec[2] + 1))
        else:
            options = list(spec[1])
            values[key] = options[int(rng.integers(len(options)))]
    return values


def random_search(objective: Objective, space: Space, num_trials: int, budget: int, *,
                  seed: int = 0) -> list[Trial]:
    """``num_trials`` independent samples, each trained for ``budget``; sorted best first."""
    check_space(space)
    if num_trials < 1 or budget < 1:
        raise ConfigError(f"num_trials={num_trials}, budget={budget}: expected both >= 1.")
    rng = np.random.default_rng(seed)
    trials = []
    for trial_id in range(num_trials):
        overrides = sample(space, rng)
        trials.append(Trial(trial_id, overrides, budget, objective(overrides, budget,
                                                                    trial_id)))
    return sorted(trials, key=lambda t: (_key(t.score), t.trial_id))


def _key(score: float) -> float:
    return score if math.isfinite(score) else math.inf  # diverged runs rank last


def successive_halving(objective: Objective, candidates: Sequence[dict[str, Any]],
                       min_budget: int, eta: int = 3, *, max_budget: int | None = None,
                       first_id: int = 0) -> list[list[Trial]]:
    """Successive halving over ``candidates``; returns the rungs, each sorted best first.

    Rung ``r`` trains the survivors for ``min_budget * eta**r`` steps (capped at
    ``max_budget``) and keeps the best ``floor(n / eta)`` (at least one). The winner is
    ``rungs[-1][0]``.
    """
    if eta < 2 or min_budget < 1:
        raise ConfigError(f"eta={eta}, min_budget={min_budget}: expected eta >= 2 and "
                          "min_budget >= 1.")
    if not candidates:
        raise ConfigError("candidates: expected at least one configuration.")
    alive = [(first_id + i, dict(c)) for i, c in enumerate(candidates)]
    rungs, rung, budget = [], 0, min_budget
    while True:
        if max_budget is not None:
            budget = min(budget, max_budget)
        trials = sorted((Trial(tid, overrides, budget, objective(overrides, budget, tid), rung)
                         for tid, overrides in alive), key=lambda t: (_key(t.score), t.trial_id))
        rungs.append(trials)
        if len(trials) == 1 or (max_budget is not None and budget >= max_budget):
            return rungs
        keep = max(1, len(trials) // eta)
        alive = [(t.trial_id, t.overrides) for t in trials[:keep]]
        rung, budget = rung + 1, budget * eta


def hyperband(objective: Objective, space: Space, max_budget: int, eta: int = 3, *,
              seed: int = 0) -> list[list[list[Trial]]]:
    """Hyperband: brackets ``s = s_max..0``, bracket ``s`` starts ``ceil((s_max+1)/(s+1) *
    eta**s)`` random configurations at budget ``max_budget * eta**-s``. Returns the brackets'
    rungs; the best trial overall is the lowest score in any last rung."""
    check_space(space)
    if max_budget < 1 or eta < 2:
        raise ConfigError(f"max_budget={max_budget}, eta={eta}: expected >= 1 and >= 2.")
    rng = np.random.default_rng(seed)
    s_max = int(math.floor(math.log(max_budget) / math.log(eta) + 1e-9))
    brackets, next_id = [], 0
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta ** s))
        min_budget = max(1, int(round(max_budget * eta ** -s)))
        candidates = [sample(space, rng) for _ in range(n)]
        brackets.append(successive_halving(objective, candidates, min_budget, eta,
                                           max_budget=max_budget, first_id=next_id))
        next_id += n
    return brackets


def best_trial(results: Sequence[Trial] | Sequence[Sequence[Trial]]) -> Trial:
    """The lowest-score trial at the largest budget it reached, from any result shape."""
    flat: list[Trial] = []

    def collect(item):
        if isinstance(item, Trial):
            flat.append(item)
        else:
            for sub in item:
                collect(sub)

    collect(results)
    final: dict[int, Trial] = {}
    for trial in flat:
        if trial.trial_id not in final or trial.budget >= final[trial.trial_id].budget:
            final[trial.trial_id] = trial
    top_budget = max(t.budget for t in final.values())
    return min((t for t in final.values() if t.budget == top_budget),
               key=lambda t: (_key(t.score), t.trial_id))


def training_objective(base_config: Any, workdir: str | pathlib.Path, *,
                       metric: str = "loss", maximize: bool = False) -> Objective:
    """Objective that trains ``base_config`` + overrides for ``budget`` steps in
    ``workdir/trial_<id>`` (resuming a promoted trial) and returns the held-out ``metric``
    (negated when ``maximize``, so lower is always better)."""
    from jaxdl.config import apply_overrides
    from jaxdl.train import train_and_evaluate
    from jaxdl.train.experiment import REGISTRIES

    def objective(overrides: dict[str, Any], budget: int, trial_id: int) -> float:
        config = copy.deepcopy(base_config)
        apply_overrides(config, overrides, registries=REGISTRIES)
        with config.unlocked():
            config.num_steps = int(budget)
            config.progress_bar = False
        result = train_and_evaluate(config, pathlib.Path(workdir) / f"trial_{trial_id:03d}")
        if metric not in result.eval_metrics:
            raise ConfigError(f"metric={metric!r}: the objective reports "
                              f"{sorted(result.eval_metrics)}.")
        value = float(result.eval_metrics[metric])
        return -value if maximize else value

    return objective
