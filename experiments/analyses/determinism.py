"""Determinism check: train one config twice from scratch and compare bit for bit.

Passes when every logged metric and the sha256 of the final parameters agree
(:func:`jaxdl.monitor.reproducibility.determinism_check`).
"""

from __future__ import annotations

import pathlib
from typing import Any

from experiments.analyses.registry import ANALYSES
from jaxdl.monitor.reproducibility import determinism_check


@ANALYSES.register("determinism")
def run(*, workdir: pathlib.Path, seed: int, train) -> dict[str, Any]:
    """Two fresh runs of ``train`` (with ``seed``) in ``workdir/run_a`` and ``run_b``."""
    with train.unlocked():
        train.seed = seed
    comparison = determinism_check(train, workdir)
    summary = {"identical": comparison.identical, "params_equal": comparison.params_equal,
               "params_sha256": comparison.fingerprints[0],
               "metric_differences": len(comparison.metric_differences),
               "report": str(comparison)}
    return {"summary": summary, "figures": [],
            "metric_differences": comparison.metric_differences[:50]}
