"""Training dynamics: per-layer statistics logged every N steps, and their plots.

Every ``config.monitor.dynamics_every`` steps the loop runs :class:`DynamicsMonitor` on the
step's batch: for each layer (execution order, from
:func:`jaxdl.autodiff.gradient_flow`) the gradient norm, the parameter norm, the
update-to-parameter ratio of the step just taken (Karpathy's rule of thumb: around 1e-3
for a healthy learning rate), the activation RMS/mean/std and the dead-unit fraction. The
records go to ``dynamics.jsonl`` and TensorBoard (scalars, and histograms of weights and
activations); at the end :func:`plot_dynamics` draws a layers x steps heatmap of gradient
norms, the update ratios, and weight/activation histograms, and :func:`diagnose_run`
gives the vanishing/exploding verdict of the last record (Glorot & Bengio, 2010).
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
from typing import Any

import jax
import numpy as np

from jaxdl.autodiff.gradient_flow import LayerFlow, diagnose, gradient_flow
from jaxdl.monitor.plots import subplots

DYNAMICS_FILE = "dynamics.jsonl"
HISTOGRAM_BINS = 40
FIELDS = ("param_grad_norm", "param_norm", "update_to_param", "activation_norm",
          "activation_mean", "activation_std", "dead_unit_fraction")


class DynamicsMonitor:
    """Computes and records per-layer statistics (one jitted gradient-flow pass)."""

    def __init__(self, graphdef: Any, workdir: str | pathlib.Path, *, tensorboard=None,
                 resume_step: int | None = None):
        self.path = pathlib.Path(workdir) / DYNAMICS_FILE
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():  # drop records past the restored step, as MetricWriter does
            kept = [r for r in read_dynamics(workdir) if r["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._tb = tensorboard
        self._flow = jax.jit(functools.partial(gradient_flow, graphdef,
                                               histogram_bins=HISTOGRAM_BINS))

    def record(self, step: int, params: Any, model_state: Any, batch: dict[str, Any],
               update: Any) -> list[LayerFlow]:
        """Measure on ``batch`` at ``params`` (after the step); ``update`` = params change."""
        report = jax.device_get(self._flow(params, model_state, dict(batch), update=update))
        layers = {layer.name: {f: _float(getattr(layer, f)) for f in FIELDS}
                  for layer in report}
        for layer in report:
            layers[layer.name]["activation_histogram"] = \
                np.asarray(layer.activation_histogram).tolist()
            layers[layer.name]["activation_range"] = np.asarray(layer.activation_range).tolist()
        with open(self.path, "a") as file:
            file.write(json.dumps({"step": int(step), "layers": layers}) + "\n")
        if self._tb is not None:
            for name, stats in layers.items():
                for field in FIELDS:
                    value = stats[field]
                    if value is not None and math.isfinite(value):
                        self._tb.add_scalar(f"dynamics/{name}/{field}", value, int(step))
            for layer in report:
                _add_histogram(self._tb, f"activations/{layer.name}", layer, int(step))
            flat = jax.tree_util.tree_leaves_with_path(jax.device_get(params))
            for path, leaf in flat:
                self._tb.add_histogram(f"weights{jax.tree_util.keystr(path)}",
                                       np.asarray(leaf, np.float32), int(step))
        return report


def _add_histogram(tb: Any, tag: str, layer: LayerFlow, step: int) -> None:
    """A TensorBoard histogram from the fixed-bin counts computed on the device."""
    counts = np.asarray(layer.activation_histogram, np.float64)
    low, high = (float(v) for v in np.asarray(layer.activation_range))
    total = counts.sum()
    if not (np.isfinite(low) and np.isfinite(high)) or total == 0:
        return
    edges = np.linspace(low, high, counts.size + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    tb.add_histogram_raw(tag, min=low, max=high, num=int(total),
                         sum=float(counts @ centres), sum_squares=float(counts @ centres ** 2),
                         bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(),
                         global_step=step)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def read_dynamics(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    """The records of ``workdir/dynamics.jsonl`` (torn last lines skipped)."""
    path = pathlib.Path(workdir) / DYNAMICS_FILE
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def diagnose_run(workdir: str | pathlib.Path) -> str:
    """The vanishing/exploding verdict for the last dynamics record of a run."""
    records = read_dynamics(workdir)
    if not records:
        return "no dynamics recorded (set config.monitor.dynamics_every > 0)."
    layers = records[-1]["layers"]
    report = [LayerFlow(name=name, param_grad_norm=np.float64(s["param_grad_norm"]),
                        param_norm=np.float64(s["param_norm"]),
                        activation_norm=np.float64(s["activation_norm"]),
                        activation_mean=np.float64(s["activation_mean"]),
                        activation_std=np.float64(s["activation_std"]))
              for name, s in layers.items()]
    return f"step {records[-1]['step']}: " + diagnose(report)


def plot_dynamics(workdir: str | pathlib.Path, filename: str = "dynamics.png",
                  params: Any = None) -> pathlib.Path | None:
    """Heatmap of log10 gradient norm (layers x steps), update ratios per layer, dead-unit
    fractions and, given ``params``, histograms of every weight leaf."""
    records = read_dynamics(workdir)
    if not records:
        return None

    names = list(records[-1]["layers"])
    steps = [r["step"] for r in records]

    def table(field):
        return np.array([[np.nan if (v := r["layers"].get(n, {}).get(field)) is None else v
                          for r in records] for n in names], np.float64)

    fig, grid = subplots(2, 3, figsize=(16, 2 * (0.3 * len(names) + 3)))
    axes = grid.ravel()
    axes[5].axis("off")
    if params is None:
        axes[4].axis("off")
    with np.errstate(divide="ignore", invalid="ignore"):
        heat = np.log10(table("param_grad_norm"))
    image = axes[0].imshow(heat, aspect="auto", cmap="viridis", interpolation="nearest")
    axes[0].set(yticks=range(len(names)), yticklabels=names, xlabel="record (step)",
                title="log10 |gradient| per layer")
    ticks = np.linspace(0, len(steps) - 1, min(len(steps), 6)).astype(int)
    axes[0].set_xticks(ticks, [str(steps[i]) for i in ticks])
    fig.colorbar(image, ax=axes[0])
    for name, row in zip(names, table("update_to_param")):
        axes[1].semilogy(steps, row, label=name)
    axes[1].axhline(1e-3, color="gray", linestyle=":")
    axes[1].set(xlabel="step", title="|update| / |param| (dotted: 1e-3)")
    for name, row in zip(names, table("dead_unit_fraction")):
        axes[2].plot(steps, row, label=name)
    axes[2].set(xlabel="step", ylim=(-0.02, 1.02), title="dead-unit fraction")
    axes[2].legend(fontsize=6)
    for name, stats in records[-1]["layers"].items():
        counts = np.asarray(stats.get("activation_histogram") or [], np.float64)
        if counts.size and counts.sum() > 0:
            low, high = stats["activation_range"]
            centres = low + (np.arange(counts.size) + 0.5) * (high - low) / counts.size
            axes[3].plot(centres, counts / counts.sum(), label=name)
    axes[3].set(yscale="log", xlabel="activation (layer output)",
                title=f"activation histograms (step {steps[-1]})")
    axes[3].legend(fontsize=6)
    if params is not None:
        for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(params)):
            leaf = np.asarray(leaf, np.float64).ravel()
            if leaf.size > 1:
                axes[4].hist(leaf, bins=60, histtype="step", density=True,
                             label=jax.tree_util.keystr(path))
        axes[4].set(title="weight histograms (final)", yscale="log")
        axes[4].legend(fontsize=5)
    fig.tight_layout()
    path = pathlib.Path(workdir) / filename
    fig.savefig(path, dpi=100)
    return path
