"""Error analysis: which examples, classes and slices a model gets wrong, and how.

* :func:`worst_examples`: the ``k`` held-out examples with the highest loss (confidently
  wrong predictions first), with a PNG grid when the inputs are images;
* :func:`per_class_breakdown` and :func:`per_slice_breakdown`: accuracy and loss grouped by
  true class or by any slice label (e.g. a data source, a length bucket);
* :func:`most_confused_pairs`: the off-diagonal confusion-matrix cells, largest first;
* :func:`plot_confusion_matrix` and :func:`plot_reliability_diagram` as PNGs.
"""

from __future__ import annotations

import pathlib
from typing import Any, NamedTuple

import numpy as np

from jaxdl.eval.metrics import ReliabilityBins, _check, log_softmax
from jaxdl.monitor.plots import subplots


def per_example_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[n]`` cross-entropy of every example (nats)."""
    logits, labels = _check(logits, labels)
    return -log_softmax(logits)[np.arange(labels.size), labels]


class WorstExamples(NamedTuple):
    index: np.ndarray  # [k] positions in the evaluated arrays, worst first
    loss: np.ndarray  # [k]
    label: np.ndarray  # [k]
    prediction: np.ndarray  # [k]
    confidence: np.ndarray  # [k] probability given to the prediction


def worst_examples(logits: np.ndarray, labels: np.ndarray, k: int = 16) -> WorstExamples:
    """The ``k`` examples with the highest cross-entropy, worst first (ties: lower index)."""
    logits, labels = _check(logits, labels)
    if not 1 <= k:
        raise ValueError(f"k={k}: expected an integer >= 1.")
    losses = per_example_loss(logits, labels)
    order = np.lexsort((np.arange(labels.size), -losses))[:k]
    probs = np.exp(log_softmax(logits[order]))
    predictions = logits[order].argmax(axis=1)
    return WorstExamples(order, losses[order], labels[order], predictions,
                         probs[np.arange(order.size), predictions])


def _group_table(groups: np.ndarray, correct: np.ndarray,
                 losses: np.ndarray) -> dict[Any, dict[str, float]]:
    table = {}
    for group in np.unique(groups):
        mask = groups == group
        key = group.item() if hasattr(group, "item") else group
        table[key] = {"count": int(mask.sum()), "accuracy": float(correct[mask].mean()),
                      "loss": float(losses[mask].mean())}
    return table


def per_class_breakdown(logits: np.ndarray, labels: np.ndarray) -> dict[int, dict[str, float]]:
    """``{class: {"count", "accuracy" (= recall), "loss"}}`` over the true classes present."""
    logits, labels = _check(logits, labels)
    return _group_table(labels, logits.argmax(1) == labels, per_example_loss(logits, labels))


def per_slice_breakdown(logits: np.ndarray, labels: np.ndarray,
                        slices: np.ndarray) -> dict[Any, dict[str, float]]:
    """Accuracy and loss per value of ``slices: [n]`` (any hashable labels)."""
    logits, labels = _check(logits, labels)
    slices = np.asarray(slices)
    if slices.shape != labels.shape:
        raise ValueError(f"slices: expected shape {labels.shape}, got {slices.shape}.")
    return _group_table(slices, logits.argmax(1) == labels, per_example_loss(logits, labels))


def most_confused_pairs(matrix: np.ndarray, k: int = 5) -> list[tuple[int, int, int]]:
    """``[(true, predicted, count), ...]``: the ``k`` largest off-diagonal cells, largest first
    (ties: row-major order); cells with count 0 are left out."""
    matrix = np.asarray(matrix)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = [(int(i), int(j), int(off[i, j])) for i, j in zip(*np.unravel_index(flat, off.shape))]
    return [pair for pair in pairs if pair[2] > 0]


def plot_confusion_matrix(matrix: np.ndarray, path: str | pathlib.Path,
                          class_names: list[str] | None = None) -> pathlib.Path:
    """Row-normalised confusion matrix as a heatmap with the raw counts written in."""
    matrix = np.asarray(matrix)
    names = class_names or [str(i) for i in range(matrix.shape[0])]
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 0.45 * len(names) + 2
    fig, ax = subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names,
           yticklabels=names, xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100)
    return path


def plot_reliability_diagram(bins: ReliabilityBins | dict[str, ReliabilityBins],
                             path: str | pathlib.Path) -> pathlib.Path:
    """Accuracy vs confidence per bin (the diagonal is perfect calibration); several
    labelled diagrams (e.g. before/after temperature scaling) share one axis."""
    series = bins if isinstance(bins, dict) else {"model": bins}
    fig, ax = subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    for label, data in series.items():
        centres = (data.edges[:-1] + data.edges[1:]) / 2
        used = data.count > 0
        ax.plot(centres[used], data.accuracy[used], "o-", label=label, markersize=4)
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="reliability diagram")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100)
    return path


def plot_worst_examples(images: np.ndarray, worst: WorstExamples,
                        path: str | pathlib.Path, columns: int = 8) -> pathlib.Path:
    """A grid of ``images[worst.index]`` (``[n, H, W]`` or ``[n, H, W, C]``) titled
    ``predicted (true) confidence``."""
    chosen = np.asarray(images)[worst.index]
    rows = -(-len(chosen) // columns)
    fig, axes = subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, guess, conf in zip(axes.flat, chosen, worst.label, worst.prediction,
                                             worst.confidence):
        image = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
        ax.imshow(image, cmap="gray_r")
        ax.set_title(f"{guess} ({label}) {conf:.2f}", fontsize=7, color="red")
    fig.suptitle("worst held-out examples: predicted (true) confidence", fontsize=9)
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100)
    return path
