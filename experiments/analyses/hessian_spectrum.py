"""Hessian spectrum of a model's training loss, at initialization and after training.

Top eigenvalues by Lanczos (1950), the trace by Hutchinson (1990) and the spectral density by
stochastic Lanczos quadrature (Ubaru, Chen & Saad, 2017; Ghorbani, Krishnan & Xiao, 2019), all
from Hessian-vector products (Pearlmutter, 1994) on a fixed batch of training examples; the
Hessian is never formed. Training uses the one loop (``train_and_evaluate``).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl.autodiff import products, spectrum, stochastic
from jaxdl.monitor.plots import subplots
from jaxdl.train import build_experiment, train_and_evaluate


def _curvature(loss_fn, params, key, *, top_k, lanczos_iters, density_probes, density_iters,
               trace_probes) -> dict[str, Any]:
    matvec = jax.jit(lambda v: products.hessian_vector_product(loss_fn, params, v))
    k1, k2, k3 = jax.random.split(key, 3)
    top = spectrum.top_eigenvalues(matvec, params, k1, top_k, lanczos_iters)
    trace, trace_err = stochastic.hutchinson_trace(matvec, params, k2, trace_probes)
    lo, hi = float(jnp.min(top)), float(jnp.max(top))
    return {
        "loss": float(loss_fn(params)),
        "top_eigenvalues": [float(e) for e in sorted(np.asarray(top), reverse=True)],
        "trace": float(trace),
        "trace_std_error": float(trace_err),
        "_density_key": k3,
        "_range": (min(lo, 0.0), hi),
        "_matvec": matvec,
        "_density": dict(num_probes=density_probes, num_iters=density_iters),
    }


@ANALYSES.register("hessian_spectrum")
def run(*, workdir: pathlib.Path, seed: int, train, num_examples: int = 512, top_k: int = 5,
        lanczos_iters: int = 40, density_probes: int = 4, density_iters: int = 40,
        trace_probes: int = 64, grid_points: int = 400) -> dict[str, Any]:
    """Spectrum before and after training ``train`` (a training config); PNG + results."""
    experiment = build_experiment(train)
    batch = {k: v[:num_examples] for k, v in experiment.dataset.train.items()}
    initial = experiment.init_state()

    def make_loss(model_state):
        return products.model_loss_fn(experiment.graphdef, model_state, batch)

    key = jax.random.key(seed)
    before = _curvature(make_loss(initial.model_state), initial.params, key, top_k=top_k,
                        lanczos_iters=lanczos_iters, density_probes=density_probes,
                        density_iters=density_iters, trace_probes=trace_probes)
    result = train_and_evaluate(train, pathlib.Path(workdir) / "train")
    trained = result.state
    after = _curvature(make_loss(trained.model_state), trained.params, key, top_k=top_k,
                       lanczos_iters=lanczos_iters, density_probes=density_probes,
                       density_iters=density_iters, trace_probes=trace_probes)

    # One grid covering both spectra, so the two densities are comparable.
    lo = min(before["_range"][0], after["_range"][0])
    hi = max(before["_range"][1], after["_range"][1])
    margin = 0.05 * (hi - lo)
    grid = jnp.linspace(lo - margin, hi + margin, grid_points)
    sigma = (hi - lo) / 100
    densities = {}
    for label, stats, params in (("initialization", before, initial.params),
                                 ("trained", after, trained.params)):
        _, density = spectrum.spectral_density(
            stats["_matvec"], params, stats["_density_key"], grid=grid, sigma=sigma,
            **stats["_density"])
        densities[label] = np.asarray(density)
    figure = _plot(workdir, np.asarray(grid), densities, before, after)
    public = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}
    summary = {
        "num_params": int(sum(x.size for x in jax.tree.leaves(initial.params))),
        "initialization": public(before),
        "trained": public(after),
        "held_out_accuracy": result.eval_metrics.get("accuracy"),
    }
    return {"summary": summary, "figures": [figure.name],
            "density": {"grid": np.asarray(grid).tolist(),
                        **{k: v.tolist() for k, v in densities.items()}}}


def _plot(workdir, grid, densities, before, after) -> pathlib.Path:

    fig, (ax_density, ax_top) = subplots(1, 2, figsize=(11, 3.8))
    for label, density in densities.items():
        ax_density.semilogy(grid, np.maximum(density, 1e-8), label=label)
    ax_density.set(xlabel="eigenvalue", ylabel="density (log)",
                   title="Hessian spectral density (SLQ)")
    ax_density.legend()
    width = 0.38
    k = np.arange(len(before["top_eigenvalues"]))
    ax_top.bar(k - width / 2, before["top_eigenvalues"], width, label="initialization")
    ax_top.bar(k + width / 2, after["top_eigenvalues"], width, label="trained")
    ax_top.set(xlabel="rank", ylabel="eigenvalue", title="top Hessian eigenvalues (Lanczos)")
    ax_top.legend()
    fig.tight_layout()
    path = pathlib.Path(workdir) / "hessian_spectrum.png"
    fig.savefig(path, dpi=100)
    return path
