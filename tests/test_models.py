"""MLP and CNN: shapes, a numpy reference forward pass, and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models import MODELS


def build(section, input_shape, num_classes=10, seed=0):
    model = MODELS.build(section, field="model", input_shape=input_shape,
                         num_classes=num_classes, rngs=nnx.Rngs(seed))
    return functional.split_model(model)


def test_mlp_matches_numpy_forward():
    graphdef, params, state = build({"name": "mlp", "hidden": (7, 5), "activation": "tanh"},
                                    (2, 3))
    x = np.random.default_rng(0).normal(size=(4, 2, 3)).astype(np.float32)
    out, _ = functional.apply(graphdef, params, state, x)
    h = x.reshape(4, -1)
    for layer in params["layers"].values() if isinstance(params["layers"], dict) else \
            params["layers"]:
        h = np.tanh(h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"]))
    expected = h @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("input_shape", [(8, 8, 1), (28, 28, 1), (5, 5, 3)])
def test_cnn_output_shape(input_shape):
    graphdef, params, state = build({"name": "cnn", "features": (4, 8), "hidden": 16},
                                    input_shape, num_classes=7)
    out, _ = functional.apply(graphdef, params, state, jnp.zeros((3, *input_shape)))
    assert out.shape == (3, 7)


def test_cnn_first_layer_is_a_convolution():
    """Shifting an input image shifts the first conv layer's response (translation
    equivariance), checked against jax.lax's convolution directly."""
    graphdef, params, state = build({"name": "cnn", "features": (4,), "hidden": 8}, (6, 6, 1))
    kernel = params["convs"][0]["kernel"]
    x = jax.random.normal(jax.random.key(0), (1, 6, 6, 1))
    model = functional.merge_model(graphdef, params, state)
    ours = model.convs[0](x)
    ref = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(ours, ref + params["convs"][0]["bias"], rtol=1e-5, atol=1e-5)


def test_cnn_rejects_non_image_input():
    with pytest.raises(ValueError, match=r"model 'cnn' expects images \[height, width, "):
        build({"name": "cnn"}, (64,))


def test_bad_activation_named():
    with pytest.raises(ValueError, match="model.activation='swishy'"):
        build({"name": "mlp", "activation": "swishy"}, (4,))
