"""Analyses: experiments that study a model (at initialization, or before and after training)
rather than only train it. Each registers ``run(*, workdir, seed, train=None, **options)`` in
:data:`ANALYSES` and returns a JSON-able dict of results; figures go into ``workdir``.
Training inside an analysis always goes through ``jaxdl.train.train_and_evaluate``.
"""

from experiments.analyses.registry import ANALYSES
from experiments.analyses import hessian_spectrum, signal_propagation  # noqa: F401

__all__ = ["ANALYSES"]
