"""The compiled train step: a closed-form check, batch checks, donation, data parallelism."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional, parallel
from jaxdl.models import MODELS
from jaxdl.train import build_experiment, create_train_state, make_train_step
from jaxdl.train.objectives import classification
from tests.helpers import tiny_config


def softmax_regression(seed=0):
    """A linear classifier 6 -> 3 (an MLP with no hidden layer)."""
    model = MODELS.build({"name": "mlp", "hidden": ()}, field="model", input_shape=(6,),
                         num_classes=3, rngs=nnx.Rngs(seed))
    return functional.split_model(model)


def test_sgd_step_matches_closed_form_gradient():
    """For softmax regression dL/dW = X^T (softmax(XW + b) - onehot(y)) / B (numpy)."""
    graphdef, params, state = softmax_regression()
    tx = optax.sgd(0.5)
    train_state = create_train_state(params, state, tx, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(8, 6)).astype(np.float32),
             "y": rng.integers(0, 3, size=8).astype(np.int32)}
    step = make_train_step(classification(graphdef=graphdef).loss, tx, donate=False,
                           grad_norm=True)
    new_state, metrics = step(train_state, batch)

    w = np.asarray(params["head"]["kernel"], np.float64)
    b = np.asarray(params["head"]["bias"], np.float64)
    logits = batch["x"] @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = p - np.eye(3)[batch["y"]]
    grad_w, grad_b = batch["x"].T @ delta / 8, delta.mean(0)
    loss = -np.log(p[np.arange(8), batch["y"]]).mean()

    np.testing.assert_allclose(new_state.params["head"]["kernel"], w - 0.5 * grad_w, atol=1e-5)
    np.testing.assert_allclose(new_state.params["head"]["bias"], b - 0.5 * grad_b, atol=1e-5)
    assert float(metrics["loss"]) == pytest.approx(loss, rel=1e-5)
    grad_norm = np.sqrt((grad_w**2).sum() + (grad_b**2).sum())
    assert float(metrics["grad_norm"]) == pytest.approx(grad_norm, rel=1e-5)
    assert int(new_state.step) == 1


def test_bad_batch_is_refused_before_compiling():
    experiment = build_experiment(tiny_config())
    good = {"x": np.zeros((64, 8, 8, 1), np.float32), "y": np.zeros(64, np.int32)}
    with pytest.raises(ValueError, match=r"batch\['x'\] has shape \(64, 64\).*expected shape "
                                         r"\(64, 8, 8, 1\)"):
        experiment.train_step(experiment.init_state(), {**good, "x": np.zeros((64, 64))})
    with pytest.raises(ValueError, match=r"batch\['y'\] has shape \(64,\) and dtype float32"):
        experiment.train_step(experiment.init_state(), {**good, "y": np.zeros(64, np.float32)})
    with pytest.raises(ValueError, match=r"batch is missing \['y'\]"):
        experiment.train_step(experiment.init_state(), {"x": good["x"]})
    assert experiment.train_step.jitted._cache_size() == 0  # nothing was compiled


def test_step_donates_the_old_state():
    experiment = build_experiment(tiny_config())
    state = experiment.init_state()
    batch = {"x": np.zeros((64, 8, 8, 1), np.float32), "y": np.zeros(64, np.int32)}
    kernel = state.params["head"]["kernel"]
    experiment.train_step(state, batch)
    assert kernel.is_deleted()
    fresh = experiment.init_state()  # a new state each call, equal to the first
    assert not fresh.params["head"]["kernel"].is_deleted()


def test_data_parallel_step_matches_single_device():
    """The same batch on a 1-device and an 8-device mesh gives the same update."""
    results = []
    for devices in (1, 8):
        experiment = build_experiment(tiny_config(**{"mesh.data": devices}))
        rng = np.random.default_rng(1)
        batch = {"x": rng.random((64, 8, 8, 1), np.float32),
                 "y": rng.integers(0, 10, 64).astype(np.int32)}
        batch = jax.device_put(batch, parallel.batch_sharding(experiment.mesh))
        state, metrics = experiment.train_step(experiment.init_state(), batch)
        if devices == 8:
            assert len(batch["x"].sharding.device_set) == 8
            assert state.params["head"]["kernel"].sharding.is_fully_replicated
        results.append((jax.device_get(state.params), jax.device_get(metrics)))
    (p1, m1), (p8, m8) = results
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(m1["loss"]) == pytest.approx(float(m8["loss"]), rel=1e-5)


def test_step_compiles_once_for_many_steps():
    experiment = build_experiment(tiny_config())
    state = experiment.init_state()
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = {"x": rng.random((64, 8, 8, 1), np.float32),
                 "y": rng.integers(0, 10, 64).astype(np.int32)}
        state, _ = experiment.train_step(state, jax.device_put(batch))
    assert experiment.train_step.jitted._cache_size() == 1
    assert int(state.step) == 3
    assert jnp.issubdtype(state.step.dtype, jnp.integer)
