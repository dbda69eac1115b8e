"""Temperature scaling: post-hoc calibration with one parameter (Guo et al., 2017).

Modern networks are often over-confident: their top-class probability exceeds their
accuracy. Dividing the logits by a temperature ``T > 1`` softens every prediction without
changing any argmax (so accuracy is untouched); ``T`` is fit on held-out data by minimising
the negative log-likelihood, which is convex in ``1/T``. Fitting uses golden-section search
on ``log T`` over a bracket, in float64 on the host.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from jaxdl.eval.metrics import (
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
    softmax,
)

GOLDEN = (math.sqrt(5) - 1) / 2


class TemperatureFit(NamedTuple):
    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, low: float = 0.05,
                    high: float = 20.0, tol: float = 1e-6,
                    num_bins: int = 15) -> TemperatureFit:
    """The ``T`` in ``[low, high]`` minimising held-out NLL of ``logits / T``.

    Args:
      logits: ``[n, num_classes]`` held-out logits (not used for training the model).
      labels: ``[n]`` integer labels.
    """
    if not 0 < low < high:
        raise ValueError(f"low={low}, high={high}: expected 0 < low < high.")
    logits = np.asarray(logits, np.float64)

    def nll(log_t: float) -> float:
        return negative_log_likelihood(logits / math.exp(log_t), labels)

    a, b = math.log(low), math.log(high)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = nll(d)
    temperature = math.exp((a + b) / 2)
    return TemperatureFit(
        temperature=temperature,
        nll_before=negative_log_likelihood(logits, labels),
        nll_after=negative_log_likelihood(logits / temperature, labels),
        ece_before=expected_calibration_error(softmax(logits), labels, num_bins),
        ece_after=expected_calibration_error(softmax(logits / temperature), labels, num_bins),
    )


def calibration_curves(logits: np.ndarray, labels: np.ndarray, temperature: float,
                       num_bins: int = 15) -> dict:
    """Reliability bins before and after scaling, for :func:`plot_reliability_diagram`."""
    logits = np.asarray(logits, np.float64)
    return {"before": reliability_bins(softmax(logits), labels, num_bins),
            f"T = {temperature:.2f}": reliability_bins(softmax(logits / temperature), labels,
                                                       num_bins)}
