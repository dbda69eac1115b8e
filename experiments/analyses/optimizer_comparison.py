"""Optimizer comparison: one model and data set, every optimizer, the same steps and seed.

Each entry of ``optimizers`` (``{label: optimizer section}``) trains the ``train`` config
through :func:`jaxdl.train.train_and_evaluate` (same model initialisation and batch order),
and the logged train loss is plotted against steps (``loss_vs_steps.png``) and against
wall-clock seconds (``loss_vs_seconds.png``; ``wall_time`` counts everything from the start
of the training loop: compilation, evaluation and logging included, so the first point
carries the compile time). ``results.json`` holds every curve and a table of the final
held-out loss/accuracy, the train loss and the seconds per run, also written as
``table.md``. Each run trains afresh in ``<workdir>/<label>`` (an earlier run there is
deleted first).
"""

from __future__ import annotations

import copy
import math
import pathlib
import shutil
from typing import Any

from experiments.analyses.registry import ANALYSES
from jaxdl.monitor.plots import subplots
from jaxdl.registry import ConfigError
from jaxdl.train import train_and_evaluate


@ANALYSES.register("optimizer_comparison")
def run(*, workdir: pathlib.Path, seed: int, train, optimizers: dict[str, dict],
        log_scale: bool = True) -> dict[str, Any]:
    """Train ``train`` once per optimizer in ``optimizers`` and compare the curves."""
    if not optimizers:
        raise ConfigError("config.optimizers: expected a non-empty {label: optimizer "
                          "section} mapping, e.g. {'adam': {'name': 'adam', "
                          "'learning_rate': 1e-3}}.")
    for label, section in optimizers.items():
        if "name" not in section or "learning_rate" not in section:
            raise ConfigError(f"config.optimizers.{label}: expected a section with 'name' "
                              f"and 'learning_rate', got {dict(section)!r}.")
    workdir = pathlib.Path(workdir)
    curves, table = {}, []
    for label, section in optimizers.items():
        config = copy.deepcopy(train)
        with config.unlocked():
            config.seed = seed
            config.optimizer = {"schedule": "constant", **dict(section)}
            config.progress_bar = False
            config.plots = False
        run_dir = workdir / label
        if (run_dir / "config.json").exists():  # an earlier comparison's run: start afresh
            shutil.rmtree(run_dir)
        result = train_and_evaluate(config, run_dir, resume=False)
        history = result.history
        curves[label] = {key: [h[key] for h in history]
                         for key in ("step", "loss", "wall_time")}
        table.append({"optimizer": label, "name": section["name"],
                      "learning_rate": section["learning_rate"],
                      "train_loss": history[-1]["loss"],
                      "eval_loss": result.eval_metrics["loss"],
                      "eval_accuracy": result.eval_metrics.get("accuracy"),
                      "seconds": history[-1]["wall_time"],
                      "seconds_after_first_log": history[-1]["wall_time"]
                      - history[0]["wall_time"]})
    figures = [_plot(workdir, curves, "step", "steps", log_scale),
               _plot(workdir, curves, "wall_time", "seconds (wall clock, compile included)",
                     log_scale)]
    (workdir / "table.md").write_text(markdown_table(table))
    best = min(table, key=lambda r: r["eval_loss"] if math.isfinite(r["eval_loss"])
               else math.inf)
    summary = {"best_eval_loss": best["optimizer"], "table": table}
    return {"summary": summary, "figures": [f.name for f in figures], "curves": curves,
            "table": table}


def markdown_table(table: list[dict[str, Any]]) -> str:
    lines = ["| optimizer | lr | train loss | held-out loss | held-out acc. | seconds | "
             "seconds after 1st log |", "|---|---|---|---|---|---|---|"]
    for r in table:
        acc = "-" if r["eval_accuracy"] is None else f"{r['eval_accuracy']:.3f}"
        lines.append(f"| {r['optimizer']} | {r['learning_rate']:g} | {r['train_loss']:.4f} | "
                     f"{r['eval_loss']:.4f} | {acc} | {r['seconds']:.1f} | "
                     f"{r['seconds_after_first_log']:.1f} |")
    return "\n".join(lines) + "\n"


def _plot(workdir: pathlib.Path, curves, x_key: str, x_label: str, log_scale: bool):
    """Loss vs steps (one panel), or vs seconds: total wall time (compilation included) and
    seconds after the first logged point (steady-state cost, compilation excluded)."""
    panels = 1 if x_key == "step" else 2
    fig, axes = subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    for p, ax in enumerate(axes[0]):
        for i, (label, curve) in enumerate(curves.items()):
            x = [v - curve[x_key][0] for v in curve[x_key]] if p == 1 else curve[x_key]
            ax.plot(x, curve["loss"], "-" if i < 10 else "--", label=label, linewidth=1.3)
        ax.set(xlabel=x_label if p == 0 else "seconds after the first logged point",
               ylabel="train loss (mean over the log window)",
               yscale="log" if log_scale else "linear")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = workdir / f"loss_vs_{'steps' if x_key == 'step' else 'seconds'}.png"
    fig.savefig(path, dpi=100)
    return path
