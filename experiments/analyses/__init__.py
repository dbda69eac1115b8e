"""Analyses: experiments that study a model (at initialization, or before and after training)
rather than only train it. Each registers ``run(*, workdir, seed, train=None, **options)`` in
:data:`ANALYSES` and returns a JSON-able dict of results; figures go into ``workdir``.
Training inside an analysis always goes through ``jaxdl.train.train_and_evaluate``.
"""

from experiments.analyses import (  # noqa: F401  (each module registers its analysis)
    determinism,
    evaluation_report,
    hessian_spectrum,
    hparam_search,
    scaling_law,
    sequence_models,
    signal_propagation,
)
from experiments.analyses.registry import ANALYSES

__all__ = ["ANALYSES"]
