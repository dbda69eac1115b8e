"""A held-out evaluation report: metrics beyond accuracy, calibration and error analysis.

Trains ``train`` through the one loop, predicts the held-out split and writes
``confusion_matrix.png``, ``reliability.png`` and ``worst_examples.png`` with a summary of
accuracy, top-k, macro/micro/weighted P/R/F1, NLL, perplexity and ECE, the per-class table,
the most-confused pairs and a per-slice breakdown by ink (the fraction of lit pixels,
quartiles): a slice that needs no metadata yet separates thin from bold digits.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl import eval as E
from jaxdl.eval.predict import predict
from jaxdl.train import train_and_evaluate


@ANALYSES.register("evaluation_report")
def run(*, workdir: pathlib.Path, seed: int, train, worst_k: int = 24,
        num_bins: int = 15) -> dict[str, Any]:
    """Train, then evaluate on the held-out split with every metric and plot."""
    del seed  # the training config carries its own seed
    workdir = pathlib.Path(workdir)
    result = train_and_evaluate(train, workdir / "train")
    experiment, state = result.experiment, result.state
    x, labels = experiment.dataset.eval["x"], np.asarray(experiment.dataset.eval["y"])
    logits = predict(experiment.graphdef, state.params, state.model_state, x)
    num_classes = logits.shape[-1]
    report = E.classification_report(logits, labels, num_bins=num_bins)
    matrix = E.confusion_matrix(labels, logits.argmax(1), num_classes)
    ink = (np.asarray(x).reshape(len(x), -1) > 0.5).mean(axis=1)
    quartile = np.searchsorted(np.quantile(ink, [0.25, 0.5, 0.75]), ink)
    slices = np.array(["ink q1 (thin)", "ink q2", "ink q3", "ink q4 (bold)"])[quartile]
    worst = E.worst_examples(logits, labels, k=worst_k)
    figures = [
        E.plot_confusion_matrix(matrix, workdir / "confusion_matrix.png"),
        E.plot_reliability_diagram(E.reliability_bins(E.softmax(logits), labels, num_bins),
                                   workdir / "reliability.png"),
    ]
    if np.asarray(x).ndim >= 3:
        figures.append(E.plot_worst_examples(np.asarray(x), worst,
                                             workdir / "worst_examples.png"))
    summary = {
        **{k: round(v, 5) for k, v in report.items()},
        "most_confused (true, predicted, count)": E.most_confused_pairs(matrix, 5),
        "per_slice": E.per_slice_breakdown(logits, labels, slices),
        "worst_losses": [round(float(v), 3) for v in worst.loss[:5]],
    }
    return {"summary": summary, "figures": [f.name for f in figures],
            "per_class": E.per_class_breakdown(logits, labels),
            "confusion_matrix": matrix.tolist()}
