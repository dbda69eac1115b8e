"""Greedy layer-wise autoencoder pretraining (jaxdl.pretrain)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.data import load_dataset
from jaxdl.init import deep_mlp_layers
from jaxdl.models import MODELS
from jaxdl.pretrain import pretrain_layerwise


def _linear_autoencoder_optimum(h: np.ndarray, rank: int) -> float:
    """Smallest MSE of any rank-``rank`` affine reconstruction (PCA; Eckart-Young, 1936)."""
    centred = h - h.mean(0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return float(np.sum(singular[rank:] ** 2) / h.size)


def test_each_layer_learns_to_reconstruct_its_input():
    x = jnp.asarray(load_dataset("digits").train["x"][:512].reshape(512, -1))
    layers = deep_mlp_layers(jax.random.key(0), depth=2, width=16, in_dim=64,
                             init_name="glorot_normal")
    result = jax.jit(lambda layers, x: pretrain_layerwise(
        layers, "tanh", x, jax.random.key(1), steps=500, learning_rate=1e-2))(layers, x)
    losses = np.asarray(result.losses)
    assert losses.shape == (2, 500)
    assert np.all(losses[:, -1] < 0.5 * losses[:, 0]), losses[:, [0, -1]]
    # The linear decoder keeps reconstructions in a 16-dim affine subspace, so no code can
    # beat the best rank-16 reconstruction (PCA); a trained layer gets within 3x of it.
    optimum = _linear_autoencoder_optimum(np.asarray(x), 16)
    assert optimum * 0.99 < losses[0, -1] < 3.0 * optimum, (losses[0, -1], optimum)
    # The second layer was trained on the first layer's *pretrained* codes.
    assert not np.allclose(result.params[1]["kernel"], layers[1]["kernel"])


def test_jaxdl_mlp_params_keep_structure_and_head():
    model = MODELS.build({"name": "mlp", "hidden": (12, 8)}, field="model", input_shape=(8, 8),
                         num_classes=10, rngs=nnx.Rngs(0))
    _, params, _ = functional.split_model(model)
    x = jax.random.normal(jax.random.key(2), (64, 8, 8))
    result = pretrain_layerwise(params, "relu", x, jax.random.key(3), steps=20)
    assert jax.tree.structure(result.params) == jax.tree.structure(params)
    np.testing.assert_array_equal(result.params["head"]["kernel"], params["head"]["kernel"])
    assert result.losses.shape == (2, 20)


def test_bad_options_are_refused():
    layers = deep_mlp_layers(jax.random.key(0), 1, 4, 3, "he_normal")
    with pytest.raises(ValueError, match="steps=0"):
        pretrain_layerwise(layers, "tanh", jnp.ones((2, 3)), jax.random.key(0), steps=0)
    with pytest.raises(ValueError, match="activation='nope'"):
        pretrain_layerwise(layers, "nope", jnp.ones((2, 3)), jax.random.key(0))
