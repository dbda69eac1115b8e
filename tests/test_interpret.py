"""Saliency and Grad-CAM against closed forms on linear models; PNGs from a real model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional, interpret
from jaxdl.models import MODELS

KEY = jax.random.key(0)
X = jax.random.uniform(KEY, (3, 6, 6, 2))
LABELS = jnp.array([0, 2, 1])


def test_saliency_of_a_linear_model_is_the_absolute_weight():
    w = jax.random.normal(jax.random.key(1), (6 * 6 * 2, 3))

    def forward(x):
        return x.reshape(x.shape[0], -1) @ w

    sal = interpret.saliency(forward, X, LABELS)
    expected = np.abs(np.asarray(w).T.reshape(3, 6, 6, 2)).max(-1)[np.asarray(LABELS)]
    np.testing.assert_allclose(sal, expected, rtol=1e-6)


def test_grad_cam_closed_form_for_pooled_linear_head():
    """classify(A) = mean_hw(A) @ W: alpha_k = W[k, c] / (h w), so the map is
    relu(sum_k W[k, c] A_k) / its maximum (no resizing: features keep the input size)."""
    w = jax.random.normal(jax.random.key(2), (2, 3))
    x = X - 0.5  # signed features, so every map has positive and negative evidence
    cam = interpret.grad_cam(lambda z: z, lambda a: a.mean((1, 2)) @ w, x, LABELS)
    raw = np.maximum(np.einsum("bhwk,kb->bhw", np.asarray(x), np.asarray(w)[:, LABELS]), 0)
    assert (raw.max((1, 2)) > 0).all() and (raw == 0).any()
    expected = raw / raw.max((1, 2), keepdims=True)
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-6)


def test_pngs_from_a_lenet(tmp_path):
    model = MODELS.build({"name": "lenet5"}, field="model", input_shape=(28, 28, 1),
                         num_classes=10, rngs=nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    x = jax.random.uniform(KEY, (2, 28, 28, 1))
    labels = jnp.array([3, 7])
    cam = interpret.model_grad_cam(graphdef, params, state, x, labels)
    sal = interpret.model_saliency(graphdef, params, state, x, labels)
    assert cam.shape == sal.shape == (2, 28, 28)
    assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0 + 1e-6
    filters = interpret.save_filters(params["conv1"]["kernel"], tmp_path / "filters.png")
    maps = interpret.save_heatmaps(x, {"saliency": sal, "grad-cam": cam}, tmp_path / "m.png")
    for path in (filters, maps):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="first-layer kernel"):
        interpret.save_filters(params["conv2"]["kernel"], tmp_path / "bad.png")
    mlp = MODELS.build({"name": "mlp", "hidden": (4,)}, field="model", input_shape=(28, 28, 1),
                       num_classes=10, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Grad-CAM needs"):
        interpret.model_grad_cam(*functional.split_model(mlp), x, labels)
