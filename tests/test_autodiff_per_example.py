"""Per-example gradients: vmap vs a Python loop, the mean identity, norms, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.autodiff import per_example
from jaxdl.models import MODELS


@pytest.fixture(scope="module")
def mlp_problem():
    # Built abstractly and filled from numpy: eager NNX initialisation costs seconds.
    abstract = nnx.eval_shape(lambda: MODELS.build(
        {"name": "mlp", "hidden": (16, 8), "activation": "tanh"}, field="model",
        input_shape=(2, 3), num_classes=4, rngs=nnx.Rngs(0)))
    graphdef, shapes, state = functional.split_model(abstract)
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s.shape) / np.sqrt(s.shape[0]), s.dtype), shapes)

    def loss_fn(params, batch, model_state):
        logits, _ = functional.apply(graphdef, params, model_state, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    batch = {"x": jnp.asarray(rng.normal(size=(6, 2, 3)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, 4, size=6), jnp.int32)}
    return loss_fn, params, state, batch


@pytest.fixture(scope="module")
def loop_reference(mlp_problem):
    loss_fn, params, state, batch = mlp_problem
    return per_example.per_example_grads_loop(loss_fn, params, batch, state)


@pytest.fixture(scope="module")
def vmapped(mlp_problem):
    loss_fn, params, state, batch = mlp_problem
    return jax.jit(per_example.per_example_grads, static_argnums=0)(loss_fn, params, batch, state)


def assert_trees_close(a, b, atol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5)


def test_vmap_matches_python_loop(mlp_problem, vmapped, loop_reference):
    _, params, _, _ = mlp_problem
    fast, slow = vmapped, loop_reference
    for leaf, p in zip(jax.tree.leaves(fast), jax.tree.leaves(params)):
        assert leaf.shape == (6, *p.shape)
    assert_trees_close(fast, slow, atol=1e-5)
    # The examples really differ (a broadcast of one gradient would also "match" shapes).
    kernel = np.asarray(fast["layers"][0]["kernel"])
    assert np.abs(kernel[0] - kernel[1]).max() > 1e-4


def test_mean_of_per_example_grads_is_batch_grad(mlp_problem, vmapped):
    loss_fn, params, state, batch = mlp_problem
    mean = jax.tree.map(lambda g: g.mean(0), vmapped)
    batch_grad = jax.jit(jax.grad(loss_fn))(params, batch, state)
    assert_trees_close(mean, batch_grad, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_norms_match_loop_reference(mlp_problem, loop_reference, chunk_size):
    loss_fn, params, state, batch = mlp_problem
    norms = jax.jit(per_example.per_example_grad_norms, static_argnums=0,
                    static_argnames="chunk_size")(loss_fn, params, batch, state,
                                                  chunk_size=chunk_size)
    slow = loop_reference
    expected = np.sqrt(sum(np.sum(np.asarray(g).reshape(6, -1) ** 2, axis=1)
                           for g in jax.tree.leaves(slow)))
    assert norms.shape == (6,)
    np.testing.assert_allclose(np.asarray(norms), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(per_example.tree_norms(slow)), expected, rtol=1e-5)


def test_linear_regression_closed_form():
    """For loss 0.5 (w.x - y)^2 the per-example gradient is (w.x_i - y_i) x_i."""
    rng = np.random.default_rng(0)
    x, y, w = rng.normal(size=(5, 3)), rng.normal(size=(5,)), rng.normal(size=(3,))
    loss_fn = lambda w, b: 0.5 * jnp.mean((b["x"] @ w - b["y"]) ** 2)
    batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
    got = jax.jit(per_example.per_example_grads, static_argnums=0)(
        loss_fn, jnp.asarray(w, jnp.float32), batch)
    expected = (x @ w - y)[:, None] * x
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_bad_batches_rejected():
    loss_fn = lambda w, b: jnp.sum(w * b["x"])
    with pytest.raises(ValueError, match="shared leading"):
        per_example.per_example_grads(loss_fn, jnp.ones(2),
                                      {"x": jnp.ones((3, 2)), "y": jnp.ones((4,))})
    with pytest.raises(ValueError, match="scalar leaf"):
        per_example.per_example_grads(loss_fn, jnp.ones(2), {"x": jnp.ones(())})
    with pytest.raises(ValueError, match="chunk_size=0"):
        per_example.per_example_grad_norms(loss_fn, jnp.ones(2), {"x": jnp.ones((3, 2))},
                                           chunk_size=0)
