"""Ill-conditioned quadratic: gradient descent vs heavy-ball momentum vs Newton vs natural
gradient, iterations to a tolerance.

The problem is least squares with a Gaussian likelihood, ``y | x ~ N(x^T w, 1)``:
``f(w) = (1/2n) ||X w - y||^2`` with a design ``X [n, d]`` built so that the Hessian
``H = X^T X / n = Q diag(lambda) Q^T`` has eigenvalues log-spaced from ``mu = 1`` to
``L = kappa`` (``Q`` a random rotation). The Fisher of that model,
``F = E_x[grad log p grad log p^T] = E[x x^T] = X^T X / n``, *is* the Hessian, so the natural
gradient with step 1 is Newton's method; with step ``eta < 1`` it contracts by ``1 - eta``
per iteration whatever ``kappa``.

Closed forms (Polyak, 1964; Nesterov, 2004): gradient descent with the optimal fixed step
``2 / (L + mu)`` contracts the error by ``(kappa - 1) / (kappa + 1)`` per iteration, so it
needs ``ceil(ln(1/tol) / ln((kappa + 1)/(kappa - 1)))`` (about ``kappa/2 ln(1/tol)``)
iterations to shrink ``||w - w*||`` by ``tol``; heavy-ball momentum with
``alpha = 4 / (sqrt L + sqrt mu)^2`` and ``beta = ((sqrt kappa - 1)/(sqrt kappa + 1))^2``
has rate ``(sqrt kappa - 1)/(sqrt kappa + 1)`` (about ``sqrt(kappa)/2 ln(1/tol)`` iterations,
times a small factor from the repeated eigenvalue of its iteration matrix).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl.monitor.plots import subplots
from jaxdl.registry import ConfigError


def make_problem(kappa: float, dim: int, seed: int) -> dict[str, np.ndarray]:
    """``{"X", "y", "w_star", "w0", "hessian", "fisher"}`` (float64) for condition ``kappa``.

    ``w0 - w*`` has equal weight on every eigenvector (the extreme ones included), so the
    worst-case rates are attained.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    eigenvalues = np.logspace(0.0, math.log10(kappa), dim)
    n = dim
    x = math.sqrt(n) * np.diag(np.sqrt(eigenvalues)) @ q.T  # X^T X / n = Q diag(l) Q^T
    w_star = rng.normal(size=dim)
    y = x @ w_star  # noiseless: the minimum is w* with f(w*) = 0
    hessian = x.T @ x / n
    fisher = np.mean([np.outer(row, row) for row in x], axis=0)  # E[x x^T], unit noise
    w0 = w_star + q @ np.ones(dim)
    return {"X": x, "y": y, "w_star": w_star, "w0": w0, "hessian": hessian,
            "fisher": fisher, "eigenvalues": eigenvalues}


def _gradient(problem, w):
    x, y = problem["X"], problem["y"]
    return x.T @ (x @ w - y) / len(y)


def run_method(problem, method: str, tol: float, max_iters: int, eta: float = 1.0):
    """Errors ``||w_k - w*|| / ||w_0 - w*||`` until ``<= tol`` (or ``max_iters``)."""
    lam = problem["eigenvalues"]
    mu, big_l = lam.min(), lam.max()
    w, previous = problem["w0"].copy(), problem["w0"].copy()
    start = np.linalg.norm(w - problem["w_star"])
    errors = [1.0]
    alpha = 4.0 / (math.sqrt(big_l) + math.sqrt(mu)) ** 2
    beta = ((math.sqrt(big_l / mu) - 1) / (math.sqrt(big_l / mu) + 1)) ** 2
    while errors[-1] > tol and len(errors) <= max_iters:
        g = _gradient(problem, w)
        if method == "gd":
            w_next = w - 2.0 / (big_l + mu) * g
        elif method == "momentum":
            w_next = w - alpha * g + beta * (w - previous)
        elif method == "newton":
            w_next = w - np.linalg.solve(problem["hessian"], g)
        elif method == "natural_gradient":
            w_next = w - eta * np.linalg.solve(problem["fisher"], g)
        else:
            raise ConfigError(f"method={method!r}: expected gd, momentum, newton or "
                              "natural_gradient.")
        previous, w = w, w_next
        errors.append(float(np.linalg.norm(w - problem["w_star"]) / start))
    return errors


def gd_iteration_bound(kappa: float, tol: float) -> int:
    """Closed-form iterations of optimal-step gradient descent to shrink the error by tol."""
    return math.ceil(math.log(1.0 / tol) / math.log((kappa + 1.0) / (kappa - 1.0)))


def momentum_rate_estimate(kappa: float, tol: float) -> int:
    """``ln(1/tol) / ln(1/rho)`` with the heavy-ball rate ``rho = (sqrt k - 1)/(sqrt k + 1)``
    (a lower estimate: the repeated eigenvalue adds a factor growing like ``k`` in ``k rho^k``)."""
    rho = (math.sqrt(kappa) - 1.0) / (math.sqrt(kappa) + 1.0)
    return math.ceil(math.log(1.0 / tol) / math.log(1.0 / rho))


METHODS = (("gd", 1.0), ("momentum", 1.0), ("newton", 1.0), ("natural_gradient", 1.0),
           ("natural_gradient", 0.5))


@ANALYSES.register("ill_conditioned_quadratic")
def run(*, workdir: pathlib.Path, seed: int, kappas=(100.0, 1000.0), dim: int = 50,
        tol: float = 1e-6, max_iters: int = 50000) -> dict[str, Any]:
    """Iterations to ``||w - w*|| <= tol ||w0 - w*||`` for every method and condition number."""
    if not kappas or any(float(k) <= 1.0 for k in kappas):
        raise ConfigError(f"config.kappas={kappas!r}: expected condition numbers > 1.")
    if not 0.0 < tol < 1.0:
        raise ConfigError(f"config.tol={tol}: expected 0 < tol < 1.")
    table, curves = [], {}
    for kappa in kappas:
        problem = make_problem(float(kappa), int(dim), seed)
        fisher_gap = float(np.abs(problem["fisher"] - problem["hessian"]).max())
        for method, eta in METHODS:
            label = method if eta == 1.0 else f"{method} (step {eta:g})"
            errors = run_method(problem, method, tol, max_iters, eta)
            curves[f"{label}, kappa={kappa:g}"] = errors
            table.append({"kappa": float(kappa), "method": label,
                          "iterations": len(errors) - 1, "reached": errors[-1] <= tol,
                          "closed_form": {"gd": gd_iteration_bound(kappa, tol),
                                          "momentum": momentum_rate_estimate(kappa, tol)}
                          .get(method, 1 if eta == 1.0 else math.ceil(
                              math.log(tol) / math.log(1.0 - eta))),
                          "max_abs_fisher_minus_hessian": fisher_gap})
    figure = _plot(pathlib.Path(workdir), curves, kappas)
    summary = {f"{r['method']} @ kappa={r['kappa']:g}": r["iterations"] for r in table}
    return {"summary": summary, "figures": [figure.name], "table": table}


def _plot(workdir: pathlib.Path, curves, kappas):
    fig, axes = subplots(1, len(kappas), figsize=(5 * len(kappas), 4), squeeze=False)
    for ax, kappa in zip(axes[0], kappas):
        for label, errors in curves.items():
            if label.endswith(f"kappa={kappa:g}"):
                ax.plot(np.arange(len(errors)), np.maximum(errors, 1e-16),
                        label=label.split(",")[0], marker="." if len(errors) < 30 else None)
        ax.set(xscale="symlog", yscale="log", xlabel="iteration",
               ylabel="||w - w*|| / ||w0 - w*||", title=f"kappa = {kappa:g}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = workdir / "ill_conditioned_quadratic.png"
    fig.savefig(path, dpi=100)
    return path
