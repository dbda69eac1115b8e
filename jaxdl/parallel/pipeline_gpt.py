"""The GPT of :mod:`jaxdl.models.transformer_models` as pipeline parts.

A GPT built with ``scan_layers=True`` holds its blocks as one block whose parameters carry a
leading ``[num_layers]`` axis: exactly the layer stack :mod:`jaxdl.parallel.pipeline` splits
into stages. The embedding (tokens + positions) stays outside the pipeline; the final norm,
the vocabulary head and the token-mean cross-entropy run on the last stage.
"""

from __future__ import annotations

import jax
import optax
from flax import nnx

from jaxdl.models.transformer_models import GPT
from jaxdl.parallel.pipeline import PipelineParts
from jaxdl.registry import ConfigError


def _pure(module: nnx.Module):
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    if jax.tree.leaves(nnx.to_pure_dict(rest)):
        raise ConfigError(f"{type(module).__name__} holds non-parameter state; the pipeline "
                          "expects parameters only.")
    return graphdef, nnx.to_pure_dict(params)


def gpt_pipeline_parts(model: GPT) -> tuple[PipelineParts, dict]:
    """``(parts, params)`` for a GPT: ``params = {"embed", "layers", "head"}``.

    ``x: int [batch, seq]`` tokens, ``y: int [batch, seq]`` next tokens; the loss is the
    mean next-token cross-entropy (the mean over microbatches of equal size equals the mean
    over the batch).
    """
    if not model.layers.scan_layers:
        raise ConfigError("model.scan_layers=False: expected True (the pipeline splits the "
                          "stacked block parameters into stages).")
    if model.dropout_rate:
        raise ConfigError(f"model.dropout={model.dropout_rate}: expected 0.0 (the pipeline "
                          "passes no dropout keys).")
    embed_def, embed_params = _pure(model.embedding)
    block_def, layer_params = _pure(model.layers.blocks)
    head_modules = {"head": model.head, "final_norm": model.final_norm}
    head_defs, head_params = {}, {}
    for name, module in head_modules.items():
        if module is not None:
            head_defs[name], head_params[name] = _pure(module)

    def embed(params, x):
        return nnx.merge(embed_def, params)(x)

    def layer(params, h):
        return nnx.merge(block_def, params)(h, causal=True)

    def head_loss(params, h, y):
        if "final_norm" in params:
            h = nnx.merge(head_defs["final_norm"], params["final_norm"])(h)
        logits = nnx.merge(head_defs["head"], params["head"])(h).astype(jax.numpy.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    parts = PipelineParts(embed=embed, layer=layer, head_loss=head_loss)
    return parts, {"embed": embed_params, "layers": layer_params, "head": head_params}
