"""Model outputs over a whole split, for the host-side metrics of :mod:`jaxdl.eval`."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from jaxdl import functional
from jaxdl.data import eval_batches


def predict(graphdef: Any, params: Any, model_state: Any, x: np.ndarray, *,
            batch_size: int = 256) -> np.ndarray:
    """Evaluation-mode outputs (e.g. logits ``[n, ..., classes]``) for every row of
    ``x: [n, ...]``, in order; one compiled shape (the last batch is padded)."""
    forward = jax.jit(functools.partial(functional.apply, graphdef, train=False))
    outputs = []
    for batch in eval_batches({"x": x}, batch_size):
        logits, _ = forward(params, model_state, batch["x"])
        outputs.append(np.asarray(logits)[batch["mask"] > 0])
    return np.concatenate(outputs)
