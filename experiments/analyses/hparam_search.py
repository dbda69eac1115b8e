"""Hyperparameter search with real trainings: random search vs successive halving.

Both strategies search the same space for the same base training config and are charged in
training steps; the results table and ``hparam_search.png`` (held-out score against steps
spent, per trial) show how much cheaper halving reaches a good configuration.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl import tune
from jaxdl.monitor.plots import subplots


def _space(entries) -> dict[str, tuple]:
    """``((key, kind, *args), ...)`` (config files cannot hold dotted keys) -> a space."""
    space = {}
    for entry in entries:
        key, kind, *args = entry
        space[key] = (kind, list(args[0])) if kind == "choice" else (kind, *args)
    return space


@ANALYSES.register("hparam_search")
def run(*, workdir: pathlib.Path, seed: int, train, space, num_random: int = 9,
        random_budget: int = 300, halving_candidates: int = 27, min_budget: int = 12,
        eta: int = 3, metric: str = "accuracy", maximize: bool = True) -> dict[str, Any]:
    """Random search (``num_random`` x ``random_budget`` steps) and successive halving
    (``halving_candidates`` from ``min_budget`` steps, factor ``eta``) over ``space``, given
    as ``((dotted_key, kind, *args), ...)``."""
    space = _space(space)
    tune.check_space(space)
    workdir = pathlib.Path(workdir)
    sign = -1.0 if maximize else 1.0

    random_trials = tune.random_search(
        tune.training_objective(train, workdir / "random", metric=metric, maximize=maximize),
        space, num_random, random_budget, seed=seed)
    rng = np.random.default_rng(seed + 1)
    candidates = [tune.sample(space, rng) for _ in range(halving_candidates)]
    rungs = tune.successive_halving(
        tune.training_objective(train, workdir / "halving", metric=metric, maximize=maximize),
        candidates, min_budget, eta)

    halving_steps = sum(t.budget - (min_budget * eta ** (t.rung - 1) if t.rung else 0)
                        for rung in rungs for t in rung)  # promoted trials resume
    best_random, best_halving = random_trials[0], rungs[-1][0]
    rows = [{"strategy": "random", "trial": t.trial_id, "budget": t.budget,
             metric: sign * t.score, **t.overrides} for t in random_trials]
    rows += [{"strategy": "halving", "trial": t.trial_id, "rung": t.rung, "budget": t.budget,
              metric: sign * t.score, **t.overrides} for rung in rungs for t in rung]
    figure = _plot(workdir, random_trials, rungs, sign, metric)
    _write_table(workdir / "trials.md", rows, metric)
    summary = {
        "random": {"steps": num_random * random_budget, f"best_{metric}": sign *
                   best_random.score, "best": best_random.overrides},
        "successive_halving": {"steps": int(halving_steps), f"best_{metric}": sign *
                               best_halving.score, "best": best_halving.overrides,
                               "rungs": [len(r) for r in rungs]},
    }
    return {"summary": summary, "figures": [figure.name], "trials": rows}


def _write_table(path: pathlib.Path, rows: list[dict[str, Any]], metric: str) -> None:
    """Every trial as a markdown table, best first within each strategy and rung."""
    keys = ["strategy", "rung", "trial", "budget", metric] + sorted(
        {k for row in rows for k in row} - {"strategy", "rung", "trial", "budget", metric})
    ordered = sorted(rows, key=lambda r: (r["strategy"], r.get("rung", 0), -r[metric]))
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in ordered]
    path.write_text("\n".join(lines) + "\n")


def _plot(workdir, random_trials, rungs, sign, metric) -> pathlib.Path:

    fig, (ax_r, ax_h) = subplots(1, 2, figsize=(11, 3.8), sharey=True)
    ax_r.bar(range(len(random_trials)), [sign * t.score for t in random_trials])
    ax_r.set(xlabel="trial (sorted)", ylabel=f"held-out {metric}",
             title=f"random search, {random_trials[0].budget} steps each")
    by_trial: dict[int, list[tuple[int, float]]] = {}
    for rung in rungs:
        for t in rung:
            by_trial.setdefault(t.trial_id, []).append((t.budget, sign * t.score))
    for points in by_trial.values():
        ax_h.plot(*zip(*points), "o-", markersize=3, alpha=0.7)
    ax_h.set(xscale="log", xlabel="training steps (budget)",
             title="successive halving: each line one configuration")
    fig.tight_layout()
    path = pathlib.Path(workdir) / "hparam_search.png"
    fig.savefig(path, dpi=100)
    return path
