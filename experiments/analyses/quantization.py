"""Weight-only quantization of a trained character GPT (issue 8).

``weight_quantization``: train ``train`` (a GPT config on tinyshakespeare) with
``jaxdl.train.train_and_evaluate``, then evaluate the held-out loss with every Dense kernel
quantized (:mod:`jaxdl.inference.quantize`): int8 per output channel and int4 in groups of
each ``group_sizes`` entry (two values packed per byte). Reports the loss and perplexity
change and the bytes of the parameters (embeddings, biases and norms stay float32).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.analyses.registry import ANALYSES
from jaxdl import functional
from jaxdl.inference import quantize as qz
from jaxdl.train import train_and_evaluate


@ANALYSES.register("weight_quantization")
def weight_quantization(*, workdir: pathlib.Path, seed: int, train, group_sizes=(32, 128),
                        eval_windows: int = 256) -> dict[str, Any]:
    del seed  # the training config carries its own seed
    result = train_and_evaluate(train, pathlib.Path(workdir) / "train")
    exp, state = result.experiment, result.state
    graphdef, params, model_state = exp.graphdef, state.params, state.model_state
    x = jnp.asarray(exp.dataset.eval["x"][:eval_windows])
    y = jnp.asarray(exp.dataset.eval["y"][:eval_windows])

    @jax.jit
    def loss(qparams):
        model = functional.merge_model(graphdef, qz.dequantize_params(qparams), model_state)
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    variants = {"float32": params, "int8": qz.quantize_params(params, 8)}
    for g in group_sizes:
        variants[f"int4_g{g}"] = qz.quantize_params(params, 4, group_size=g)
    base = float(loss(params))
    rows = {}
    for name, qparams in variants.items():
        value = float(loss(qparams))
        rows[name] = {"eval_loss": value, "perplexity": float(np.exp(value)),
                      "loss_change": value - base, "param_bytes": qz.param_bytes(qparams),
                      "memory_saved": 1.0 - qz.param_bytes(qparams) / qz.param_bytes(params)}
    summary = {"eval_windows": int(x.shape[0]), "variants": rows,
               "num_params": functional.count_params(params)}
    return {"summary": summary, "figures": ["train/curves.png"]}
