"""Temperature scaling (Guo et al., 2017) of a deliberately over-confident digits classifier.

A wide MLP is trained through the one training loop on a small training split with no
regularization, long past zero training error, so its held-out confidence exceeds its
accuracy. The held-out split is halved: the temperature is fit on the first half
(:func:`jaxdl.eval.calibration.fit_temperature`) and ECE/NLL are reported on the second,
with a reliability diagram before and after.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl.eval import metrics
from jaxdl.eval.calibration import calibration_curves, fit_temperature
from jaxdl.eval.errors import plot_reliability_diagram
from jaxdl.eval.predict import predict
from jaxdl.train import train_and_evaluate


@ANALYSES.register("calibration")
def run(*, workdir: pathlib.Path, seed: int, train, num_bins: int = 15) -> dict[str, Any]:
    result = train_and_evaluate(train, pathlib.Path(workdir) / "train", resume=False)
    experiment, state = result.experiment, result.state
    held_out = experiment.dataset.eval
    logits = predict(experiment.graphdef, state.params, state.model_state, held_out["x"])
    order = np.random.default_rng(seed).permutation(len(logits))
    fit_idx, test_idx = order[: len(order) // 2], order[len(order) // 2:]
    fit = fit_temperature(logits[fit_idx], held_out["y"][fit_idx], num_bins=num_bins)
    test_logits, test_labels = np.asarray(logits[test_idx], np.float64), held_out["y"][test_idx]
    t = fit.temperature
    test = {
        "ece_before": metrics.expected_calibration_error(metrics.softmax(test_logits),
                                                         test_labels, num_bins),
        "ece_after": metrics.expected_calibration_error(metrics.softmax(test_logits / t),
                                                        test_labels, num_bins),
        "nll_before": metrics.negative_log_likelihood(test_logits, test_labels),
        "nll_after": metrics.negative_log_likelihood(test_logits / t, test_labels),
        "accuracy": metrics.accuracy(test_logits, test_labels),
        "mean_confidence_before": float(metrics.softmax(test_logits).max(-1).mean()),
        "mean_confidence_after": float(metrics.softmax(test_logits / t).max(-1).mean()),
    }
    figure = plot_reliability_diagram(calibration_curves(test_logits, test_labels, t, num_bins),
                                      pathlib.Path(workdir) / "reliability.png")
    train_acc = metrics.accuracy(
        predict(experiment.graphdef, state.params, state.model_state,
                experiment.dataset.train["x"]), experiment.dataset.train["y"])
    summary = {"temperature": t, "train_accuracy": train_acc,
               "fit_half": fit._asdict(), "test_half": test}
    return {"summary": summary, "figures": [figure.name]}
