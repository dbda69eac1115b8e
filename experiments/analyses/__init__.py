"""Analyses: experiments that study a model (at initialization, or before and after training)
rather than only train it. Each registers ``run(*, workdir, seed, train=None, **options)`` in
:data:`ANALYSES` and returns a JSON-able dict of results; figures go into ``workdir``.
Training inside an analysis always goes through ``jaxdl.train.train_and_evaluate``.

Every module of this package is imported here, so a new analysis registers itself by
existing (no list to keep in step).
"""

import importlib
import pkgutil

from experiments.analyses.registry import ANALYSES

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ANALYSES"]
