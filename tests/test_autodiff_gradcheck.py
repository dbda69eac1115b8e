"""Gradient checking: correct gradients pass, wrong custom VJPs are caught by leaf, and the
finite-difference error behaves as the truncation / round-off analysis predicts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.autodiff.gradcheck import check_gradients
from jaxdl.models import MODELS


@jax.custom_vjp
def tanh_wrong_scale(x):
    return jnp.tanh(x)


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, y


def _tanh_bwd_scaled(y, g):
    return (1.1 * g * (1 - y ** 2),)  # bug: 10% too large


tanh_wrong_scale.defvjp(_tanh_fwd, _tanh_bwd_scaled)


@jax.custom_vjp
def x_sin_x_dropped_term(x):
    return x * jnp.sin(x)


def _xsin_fwd(x):
    return x * jnp.sin(x), x


def _xsin_bwd(x, g):
    return (g * jnp.sin(x),)  # bug: product rule without the x cos(x) term


x_sin_x_dropped_term.defvjp(_xsin_fwd, _xsin_bwd)


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(4, 12), (12, 8), (8, 3)]
    return {
        "layers": [{"kernel": jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]), jnp.float32),
                    "bias": jnp.asarray(rng.normal(size=s[1]) * 0.1, jnp.float32)}
                   for s in sizes],
        "step": jnp.asarray(3, jnp.int32),  # not a float: must be skipped, not crash
    }


def mlp_loss(first_activation):
    def loss(params, x, y):
        h = x
        for i, layer in enumerate(params["layers"]):
            h = h @ layer["kernel"] + layer["bias"]
            if i == 0:
                h = first_activation(h)
            elif i < len(params["layers"]) - 1:
                h = jnp.tanh(h)
        return jnp.mean((h - y) ** 2)
    return loss


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    return (jnp.asarray(rng.normal(size=(5, 4)), jnp.float32),
            jnp.asarray(rng.normal(size=(5, 3)), jnp.float32))


def test_correct_gradient_passes_and_x64_does_not_leak(data):
    report = check_gradients(mlp_loss(jnp.tanh), make_params(), *data)
    assert report.passed, str(report)
    # Near the optimal central-difference step (~ eps_machine^(1/3)) the agreement is
    # tighter still; at the default 1e-6 round-off (~1e-10 absolute) dominates.
    assert check_gradients(mlp_loss(jnp.tanh), make_params(), *data,
                           eps=1e-5).max_rel_error < 1e-7
    paths = [leaf.path for leaf in report.leaves]
    assert paths == [f"layers/{i}/{n}" for i in range(3) for n in ("bias", "kernel")]
    by_path = {leaf.path: leaf for leaf in report.leaves}
    assert by_path["layers/1/kernel"].coords_checked == 50  # 96 entries: a random subset
    assert by_path["layers/0/kernel"].coords_checked == 48  # 48 entries: all of them
    assert "layers/1/kernel" in str(report) and "PASSED" in str(report)
    # float64 was local to the check.
    assert jnp.asarray(1.0).dtype == jnp.float32
    assert not jax.config.jax_enable_x64


@pytest.mark.parametrize("bad_activation", [tanh_wrong_scale, x_sin_x_dropped_term])
def test_wrong_custom_vjp_is_detected_in_the_leaves_it_feeds(data, bad_activation):
    report = check_gradients(mlp_loss(bad_activation), make_params(), *data)
    assert not report.passed
    # Only the first layer's parameters are upstream of the wrong backward rule.
    assert report.failing == ("layers/0/bias", "layers/0/kernel"), str(report)
    assert max(leaf.max_rel_error for leaf in report.leaves if not leaf.ok) > 1e-3
    assert "FAILED: layers/0/bias, layers/0/kernel" in str(report)


def test_error_versus_eps_truncation_and_round_off():
    """Central differences: truncation error ~ eps^2 for large eps; round-off ~ 1/eps for
    tiny eps (Nocedal & Wright, 2006)."""
    f = lambda p: jnp.sum(jnp.sin(3.0 * p["w"]) * jnp.exp(p["w"]))
    params = {"w": jnp.linspace(-1.0, 1.0, 7)}
    # tiny=1e-30: the raw relative error, without the default round-off floor.
    error = {eps: check_gradients(f, params, eps=eps, tiny=1e-30).max_rel_error
             for eps in (1e-1, 1e-2, 1e-3, 1e-6, 1e-12)}
    assert error[1e-1] > error[1e-2] > error[1e-3] > error[1e-6]
    assert 30 < error[1e-2] / error[1e-3] < 300  # second order: 100x per decade
    assert error[1e-1] > 1e-3 and error[1e-6] < 1e-8
    assert error[1e-12] > 10 * error[1e-6]  # round-off takes over for tiny steps
    assert not check_gradients(f, params, eps=1e-1).passed  # large eps fails the check


def test_subset_is_seeded():
    f = lambda p: jnp.sum(jnp.cos(p["w"]) ** 3)
    params = {"w": jnp.linspace(-2.0, 2.0, 200).reshape(20, 10)}
    a = check_gradients(f, params, max_coords_per_leaf=7, seed=3)
    b = check_gradients(f, params, max_coords_per_leaf=7, seed=3)
    assert a.leaves[0].coords_checked == 7 and a.passed
    assert a.leaves[0].worst_index == b.leaves[0].worst_index
    assert a.leaves[0].max_rel_error == b.leaves[0].max_rel_error


def test_jaxdl_mlp_passes_in_float64():
    abstract = nnx.eval_shape(lambda: MODELS.build(
        {"name": "mlp", "hidden": (6,), "activation": "tanh"}, field="model",
        input_shape=(3,), num_classes=4, rngs=nnx.Rngs(0)))
    graphdef, shapes, state = functional.split_model(abstract)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.5, s.dtype), shapes)
    x = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    labels = jnp.asarray([0, 1, 2, 3])

    def loss(p, x):
        logits, _ = functional.apply(graphdef, p, state, x)
        assert logits.dtype == jnp.float64  # the model really ran in float64
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    report = check_gradients(loss, params, x, eps=1e-5)
    assert report.passed and report.max_rel_error < 1e-7, str(report)
    assert {leaf.path for leaf in report.leaves} == {
        "head/bias", "head/kernel", "layers/0/bias", "layers/0/kernel"}


def test_bad_arguments():
    f = lambda p: jnp.sum(p ** 2)
    with pytest.raises(ValueError, match="eps=0"):
        check_gradients(f, jnp.ones(2), eps=0)
    with pytest.raises(ValueError, match="max_coords_per_leaf=0"):
        check_gradients(f, jnp.ones(2), max_coords_per_leaf=0)
    with pytest.raises(ValueError, match="scalar output"):
        check_gradients(lambda p: p ** 2, jnp.ones(2))


def test_model_loss_fn_keeps_float64_for_gradient_checking():
    # model_loss_fn up-casts low precision logits but must not down-cast float64 ones, or
    # central differences of size 1e-6 vanish in float32 rounding and every check fails.
    from jaxdl.autodiff.products import model_loss_fn

    abstract = nnx.eval_shape(lambda: MODELS.build(
        {"name": "mlp", "hidden": (5,)}, field="model", input_shape=(3,), num_classes=3,
        rngs=nnx.Rngs(0)))
    graphdef, shapes, state = functional.split_model(abstract)
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)
    batch = {"x": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
             "y": jnp.asarray([0, 1, 2, 0, 1, 2])}
    report = check_gradients(lambda p, b: model_loss_fn(graphdef, state, b)(p), params, batch)
    assert report.passed, str(report)
