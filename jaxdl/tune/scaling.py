"""Scaling laws: power-law fits of loss against model size and data.

* One variable (Kaplan et al., 2020): ``L(x) = a * x**(-alpha) + c``, the irreducible loss
  ``c`` plus a power-law excess.
* Parameters and tokens jointly (Hoffmann et al., 2022, "Chinchilla", their approach 3):
  ``L(N, D) = E + A / N**alpha + B / D**beta``; minimising it under a compute budget
  ``C ~ 6 N D`` gives the compute-optimal split ``N_opt ~ C**(beta/(alpha+beta))``.

Fits are non-linear least squares on the log of the loss (so small and large losses weigh
alike), with positive parameters enforced by optimising their logarithms (scipy).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PowerLaw(NamedTuple):
    a: float
    alpha: float
    c: float

    def __call__(self, x):
        return self.a * np.asarray(x, np.float64) ** -self.alpha + self.c


class ChinchillaLaw(NamedTuple):
    e: float
    a: float
    alpha: float
    b: float
    beta: float

    def __call__(self, n, d):
        n, d = np.asarray(n, np.float64), np.asarray(d, np.float64)
        return self.e + self.a * n ** -self.alpha + self.b * d ** -self.beta

    def compute_optimal(self, flops: float) -> tuple[float, float]:
        """``(N, D)`` minimising the loss subject to ``6 N D = flops``."""
        # dL/dN = 0 along D = C/(6N):  alpha A N^-alpha = beta B D^-beta.
        g = (self.alpha * self.a / (self.beta * self.b)) ** (1 / (self.alpha + self.beta))
        n = g * (flops / 6) ** (self.beta / (self.alpha + self.beta))
        return float(n), float(flops / (6 * n))


def _arrays(*values) -> list[np.ndarray]:
    arrays = [np.asarray(v, np.float64).reshape(-1) for v in values]
    if len({a.size for a in arrays}) != 1 or arrays[0].size < 3:
        raise ValueError(f"expected arrays of one length >= 3, got {[a.size for a in arrays]}.")
    if any(np.any(a <= 0) or not np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("sizes and losses must be finite and > 0.")
    return arrays


def fit_power_law(x, loss) -> PowerLaw:
    """Fit ``loss ~ a x**-alpha + c`` (a, alpha, c >= 0)."""
    from scipy.optimize import least_squares

    x, loss = _arrays(x, loss)
    scale = x.min()

    def residual(theta):
        a, alpha, c = np.exp(theta)
        return np.log(a * (x / scale) ** -alpha + c) - np.log(loss)

    start = np.log([max(loss.max() - loss.min(), 1e-3), 0.5, max(loss.min() * 0.5, 1e-6)])
    theta = least_squares(residual, start, method="lm", max_nfev=5000).x
    a, alpha, c = np.exp(theta)
    return PowerLaw(float(a * scale ** alpha), float(alpha), float(c))


def fit_chinchilla(n, d, loss) -> ChinchillaLaw:
    """Fit ``loss ~ E + A N**-alpha + B D**-beta`` from runs of varied size and data."""
    from scipy.optimize import least_squares

    n, d, loss = _arrays(n, d, loss)
    n_scale, d_scale = n.min(), d.min()

    def residual(theta):
        e, a, alpha, b, beta = np.exp(theta)
        predicted = e + a * (n / n_scale) ** -alpha + b * (d / d_scale) ** -beta
        return np.log(predicted) - np.log(loss)

    best = None
    for alpha0 in (0.2, 0.5, 1.0):  # a few starts: the problem is not convex
        spread = max(loss.max() - loss.min(), 1e-3)
        start = np.log([max(loss.min() * 0.5, 1e-6), spread, alpha0, spread, alpha0])
        fit = least_squares(residual, start, method="lm", max_nfev=20000)
        if best is None or fit.cost < best.cost:
            best = fit
    e, a, alpha, b, beta = np.exp(best.x)
    return ChinchillaLaw(float(e), float(a * n_scale ** alpha), float(alpha),
                         float(b * d_scale ** beta), float(beta))
