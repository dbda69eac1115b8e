"""Attention-map extraction and heatmap PNGs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models import MODELS
from jaxdl.models.attention_maps import (
    attention_maps,
    attention_rollout,
    plot_attention_maps,
)


def test_gpt_attention_maps_are_its_causal_softmax_rows(tmp_path):
    model = MODELS.build({"name": "gpt", "d_model": 16, "num_layers": 2, "num_heads": 2,
                          "scan_layers": True}, field="model", input_shape=(6,),
                         num_classes=7, rngs=nnx.Rngs(0))
    x = jnp.array([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    maps = attention_maps(*functional.split_model(model), x)
    assert maps.shape == (2, 2, 2, 6, 6)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
    assert np.all(maps[..., np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0.0)
    # Layer 0 is the first block's attention on the normalised embeddings.
    graphdef, state = nnx.split(model.layers.blocks)  # parameters stacked over layers
    first = nnx.merge(graphdef, jax.tree.map(lambda a: a[0], state))
    _, expected = first.self_attention(first.norm1(model.embed(x)), causal=True,
                                       return_weights=True)
    np.testing.assert_allclose(maps[0], expected, atol=1e-6)

    path = plot_attention_maps(maps[:, 0], tmp_path / "maps.png", labels=list("abcdef"),
                               title="gpt")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plot_rejects_wrong_rank(tmp_path):
    with pytest.raises(ValueError, match="layers, heads, q_len, k_len"):
        plot_attention_maps(np.zeros((2, 3, 3)), tmp_path / "x.png")


def test_attention_rollout_composes_layers():
    rng = np.random.default_rng(0)
    weights = np.tril(rng.random((3, 2, 4, 5, 5)))
    weights /= weights.sum(-1, keepdims=True)  # causal attention rows
    rollout = attention_rollout(weights)
    np.testing.assert_allclose(rollout.sum(-1), 1.0)
    assert np.allclose(np.triu(rollout, 1), 0.0)  # still causal after composition
    mixed = 0.5 * np.eye(5) + 0.5 * weights.mean(2)  # rows already sum to one
    np.testing.assert_allclose(rollout, mixed[2] @ mixed[1] @ mixed[0])
    np.testing.assert_allclose(attention_rollout(weights[:1]), mixed[0])
