"""Learning-rate range test (Smith, 2017): train briefly while the rate grows exponentially,
then pick a rate from the loss-versus-rate curve.

The sweep itself is an ordinary run of the one training loop with ``schedule="range_test"``
(rate from ``final_fraction * learning_rate`` up to ``learning_rate``) and ``log_every=1``;
:func:`lr_range_report` reads that run's ``metrics.jsonl``, plots loss against rate (PNG)
and suggests a rate.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from jaxdl.monitor.writers import read_metrics


def smooth(values: np.ndarray, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average: ``m_t / (1 - beta^t)``."""
    out, m = np.empty(len(values)), 0.0
    for t, v in enumerate(values, start=1):
        m = beta * m + (1 - beta) * v
        out[t - 1] = m / (1 - beta**t)
    return out


def suggest_learning_rate(rates: np.ndarray, losses: np.ndarray, *, beta: float = 0.9,
                          diverge_factor: float = 4.0) -> dict[str, float]:
    """Suggest a rate from a range test.

    The curve is smoothed and cut where the smoothed loss first exceeds ``diverge_factor``
    times its minimum (divergence). Returns ``steepest`` (the rate where the smoothed loss
    falls fastest per decade of rate), ``min_loss_rate`` (the rate at the smoothed minimum)
    and ``suggested`` = ``min(steepest, min_loss_rate / 10)``, the usual conservative pick.

    Args:
      rates: ``[n]`` increasing positive rates; losses: ``[n]`` losses at those rates.
    """
    rates, losses = np.asarray(rates, float), np.asarray(losses, float)
    if rates.shape != losses.shape or rates.size < 5:
        raise ValueError(f"rates and losses must be 1-D of equal length >= 5, got "
                         f"{rates.shape} and {losses.shape}.")
    finite = np.isfinite(losses)
    stop = int(np.argmin(finite)) if not finite.all() else len(losses)
    curve = smooth(losses[:stop], beta)
    lowest = int(np.argmin(curve))
    diverged = np.nonzero(curve[lowest:] > diverge_factor * curve[lowest])[0]
    end = lowest + int(diverged[0]) if diverged.size else len(curve)
    rates, curve = rates[:end], curve[:end]
    slopes = np.gradient(curve, np.log10(rates))
    steepest = float(rates[int(np.argmin(slopes))])
    min_loss_rate = float(rates[int(np.argmin(curve))])
    return {"steepest": steepest, "min_loss_rate": min_loss_rate,
            "suggested": min(steepest, min_loss_rate / 10)}


def lr_range_report(workdir: str | pathlib.Path, filename: str = "lr_range.png"
                    ) -> dict[str, Any]:
    """Read a range-test run's train metrics, save the loss-vs-rate PNG, return the
    suggestion (:func:`suggest_learning_rate`) plus ``figure`` (the PNG's path)."""
    from jaxdl.monitor.plots import subplots

    records = read_metrics(workdir, "train")
    rates = np.array([r["learning_rate"] for r in records])
    losses = np.array([np.nan if r["loss"] is None else r["loss"] for r in records])
    result = suggest_learning_rate(rates, losses)
    fig, ax = subplots(figsize=(5.5, 3.6))
    ax.plot(rates, losses, alpha=0.35, label="loss")
    ax.plot(rates[: len(smooth(losses[np.isfinite(losses)]))],
            smooth(losses[np.isfinite(losses)]), label="smoothed")
    ax.axvline(result["suggested"], color="k", ls="--",
               label=f"suggested {result['suggested']:.2g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss",
           title="learning-rate range test")
    finite = losses[np.isfinite(losses)]
    ax.set_ylim(finite.min() * 0.9, 1.3 * smooth(finite)[:10].max())  # up to the start level
    ax.legend()
    fig.tight_layout()
    path = pathlib.Path(workdir) / filename
    fig.savefig(path, dpi=100)
    return {**result, "figure": str(path)}
