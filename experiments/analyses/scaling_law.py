"""A Chinchilla-style scaling-law fit from a sweep of small MLPs.

Every width in ``widths`` is trained once through the one loop with a constant learning
rate, resuming to each budget in ``steps`` in turn, so one run per width yields held-out
losses at several data sizes ``D = steps * batch_size`` (examples seen). The losses are fit
with ``L(N, D) = E + A N^-alpha + B D^-beta`` (Hoffmann et al., 2022) and
``scaling_law.png`` shows measurements and fit.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import jax
import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl import tune
from jaxdl.monitor.plots import subplots
from jaxdl.registry import ConfigError
from jaxdl.train import train_and_evaluate


@ANALYSES.register("scaling_law")
def run(*, workdir: pathlib.Path, seed: int, train, widths=(8, 16, 32, 64, 128),
        steps=(50, 100, 200, 400)) -> dict[str, Any]:
    """Sweep MLP width x training steps; fit and plot the scaling law."""
    if len(widths) < 2 or len(steps) < 2:
        raise ConfigError("config.widths and config.steps: expected at least two values each.")
    if train.optimizer.schedule != "constant":
        raise ConfigError("config.train.optimizer.schedule: expected 'constant' (runs are "
                          "resumed to longer budgets, which must not change the schedule).")
    records = []
    for width in widths:
        config = copy.deepcopy(train)
        with config.unlocked():
            config.seed = seed
            config.model.hidden = (int(width),)
            config.progress_bar = False
        for budget in sorted(steps):
            config.num_steps = int(budget)
            result = train_and_evaluate(config, pathlib.Path(workdir) / f"width_{width}")
            params = int(sum(x.size for x in jax.tree.leaves(result.state.params)))
            records.append({"width": int(width), "params": params, "steps": int(budget),
                            "examples_seen": int(budget) * config.batch_size,
                            "eval_loss": result.eval_metrics["loss"],
                            "eval_accuracy": result.eval_metrics.get("accuracy")})
    n = np.array([r["params"] for r in records], np.float64)
    d = np.array([r["examples_seen"] for r in records], np.float64)
    loss = np.array([r["eval_loss"] for r in records], np.float64)
    law = tune.fit_chinchilla(n, d, loss)
    residual = np.log(law(n, d)) - np.log(loss)
    figure = _plot(pathlib.Path(workdir), records, law)
    summary = {"fit": law._asdict(), "rms_log_residual": float(np.sqrt(np.mean(residual ** 2))),
               "runs": len(widths), "points": len(records)}
    return {"summary": summary, "figures": [figure.name], "records": records}


def _plot(workdir: pathlib.Path, records, law) -> pathlib.Path:

    fig, ax = subplots(figsize=(6, 4))
    for seen in sorted({r["examples_seen"] for r in records}):
        rows = sorted((r for r in records if r["examples_seen"] == seen),
                      key=lambda r: r["params"])
        n = np.array([r["params"] for r in rows], np.float64)
        line, = ax.plot(n, [r["eval_loss"] for r in rows], "o", markersize=4)
        grid = np.logspace(np.log10(n.min()), np.log10(n.max()), 50)
        ax.plot(grid, law(grid, seen), "-", color=line.get_color(), label=f"D = {seen:,}")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="held-out loss",
           title=f"L = {law.e:.3f} + {law.a:.3g} N^-{law.alpha:.2f} + {law.b:.3g} "
                 f"D^-{law.beta:.2f}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = workdir / "scaling_law.png"
    fig.savefig(path, dpi=100)
    return path
