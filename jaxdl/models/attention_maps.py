"""Attention maps: extract a trained model's attention weights and draw them as heatmaps.

Works with any model that has ``attention_weights(x) -> [layers, batch, heads, q, k]``
(``gpt`` and ``vit``); the weights come from the naive path whatever ``model.attention`` says,
so they are exactly the softmax rows the model uses (up to float rounding).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from jaxdl import functional


def attention_maps(graphdef: nnx.GraphDef, params, state, x) -> np.ndarray:
    """Attention weights ``float32 [layers, batch, heads, q_len, k_len]`` of the model
    ``(graphdef, params, state)`` on input ``x``; every row sums to one."""

    @jax.jit
    def weights(params, state, x):
        model = functional.merge_model(graphdef, params, state)
        if not hasattr(model, "attention_weights"):
            raise ValueError(f"{type(model).__name__} has no attention_weights(x) method.")
        return model.attention_weights(x)

    return np.asarray(weights(params, state, x))


def attention_rollout(weights: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each
    position through all layers, ``[batch, q_len, k_len]`` from ``[layers, batch, heads, q,
    k]`` weights.

    Each layer's head-averaged map is mixed with the identity for the residual connection,
    ``A' = residual * I + (1 - residual) * mean_h(A)`` (rows renormalised), and the layers are
    composed, ``A'_L ... A'_1``. Rows sum to one.
    """
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 5:
        raise ValueError(f"weights must be [layers, batch, heads, q_len, k_len]; got shape "
                         f"{weights.shape}.")
    mixed = weights.mean(axis=2)
    eye = np.eye(mixed.shape[-2], mixed.shape[-1])
    mixed = residual * eye + (1.0 - residual) * mixed
    mixed /= mixed.sum(-1, keepdims=True)
    rollout = mixed[0]
    for layer in mixed[1:]:
        rollout = layer @ rollout
    return rollout


def plot_attention_maps(weights: np.ndarray, path: str | pathlib.Path, *,
                        labels: Sequence[str] | None = None, title: str = "",
                        layers: Sequence[int] | None = None) -> pathlib.Path:
    """Save a grid of heatmaps (rows: layers, columns: heads) of one example's weights.

    Args:
      weights: ``[layers, heads, q_len, k_len]`` (one example of :func:`attention_maps`).
      labels: optional token labels, shown on both axes when there are at most 40.
      layers: which layers to draw (default: all).
    """
    from jaxdl.monitor.plots import subplots

    weights = np.asarray(weights)
    if weights.ndim != 4:
        raise ValueError(f"weights must be [layers, heads, q_len, k_len]; got shape "
                         f"{weights.shape}.")
    layers = list(range(weights.shape[0])) if layers is None else list(layers)
    heads = weights.shape[1]
    fig, axes = subplots(len(layers), heads, figsize=(2.6 * heads, 2.6 * len(layers)),
                             squeeze=False)
    for row, layer in enumerate(layers):
        for head in range(heads):
            ax = axes[row, head]
            ax.imshow(weights[layer, head], cmap="viridis", vmin=0.0, aspect="auto")
            ax.set_title(f"layer {layer} head {head}", fontsize=8)
            if labels is not None and len(labels) <= 40:
                ticks = np.arange(len(labels))
                ax.set_xticks(ticks, labels, fontsize=6)
                ax.set_yticks(ticks, labels, fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.supxlabel("key position")
    fig.supylabel("query position")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100)
    return path
