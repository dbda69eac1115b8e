"""Training-curve plots as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import pathlib

from jaxdl.monitor.writers import read_metrics


def subplots(*args, figsize=None, **kwargs):
    """``(figure, axes)`` like ``plt.subplots``, on a bare ``matplotlib.figure.Figure``.

    No pyplot state and no backend switch: library plots neither open windows nor take a
    notebook's inline backend away; ``figure.savefig`` renders with Agg.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*args, **kwargs)


def plot_curves(workdir: str | pathlib.Path, filename: str = "curves.png") -> pathlib.Path:
    """Plot loss (train and eval) and every other eval metric against step; return the path."""

    train = read_metrics(workdir, "train")
    evals = read_metrics(workdir, "eval")
    others = sorted({k for r in evals for k in r} - {"step", "split", "loss", "count"})
    fig, axes = subplots(1, 1 + len(others), figsize=(5 * (1 + len(others)), 3.6))
    axes = list(axes) if len(others) else [axes]
    for records, label, style in ((train, "train", "-"), (evals, "eval", "o-")):
        points = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
        if points:
            axes[0].plot(*zip(*points), style, label=label, markersize=3)
    axes[0].set(xlabel="step", ylabel="loss", title="loss")
    axes[0].set_yscale("log")
    axes[0].legend()
    for ax, name in zip(axes[1:], others):
        for records, label, style in ((train, "train", "-"), (evals, "eval", "o-")):
            points = [(r["step"], r[name]) for r in records if r.get(name) is not None]
            if points:
                ax.plot(*zip(*points), style, label=label, markersize=3)
        ax.set(xlabel="step", title=name)
        ax.legend()
    fig.tight_layout()
    path = pathlib.Path(workdir) / filename
    fig.savefig(path, dpi=100)
    return path
