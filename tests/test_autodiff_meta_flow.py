"""Hypergradients through unrolled SGD, and the per-layer gradient-flow report."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.autodiff import gradient_flow as flow
from jaxdl.autodiff import meta
from jaxdl.models import MODELS

# ---------------------------------------------------------------- meta-gradients


def regression_problem(dtype):
    """A small two-layer tanh regression: inner batches [3, 4, ...], one outer batch."""
    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(3, 5)) * 0.5, "w2": rng.normal(size=(5,)) * 0.5}
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    inner = {"x": jnp.asarray(rng.normal(size=(3, 4, 3)), dtype),
             "y": jnp.asarray(rng.normal(size=(3, 4)), dtype)}
    outer = {"x": jnp.asarray(rng.normal(size=(6, 3)), dtype),
             "y": jnp.asarray(rng.normal(size=(6,)), dtype)}

    def loss(p, batch):
        return jnp.mean((jnp.tanh(batch["x"] @ p["w1"]) @ p["w2"] - batch["y"]) ** 2)

    return loss, params, inner, outer


def test_unrolled_sgd_matches_python_loop():
    loss, params, inner, _ = regression_problem(jnp.float32)
    got = jax.jit(meta.unrolled_sgd, static_argnums=(0, 4))(loss, params, inner, -1.0, 3)
    expected, grad = params, jax.jit(jax.grad(loss))
    for t in range(3):
        grads = grad(expected, jax.tree.map(lambda a, t=t: a[t], inner))
        expected = jax.tree.map(lambda w, g: w - np.exp(-1.0) * g, expected, grads)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("remat", [False, True])
def test_meta_gradient_matches_central_difference_float64(remat):
    with jax.enable_x64(True):
        loss, params, inner, outer = regression_problem(jnp.float64)
        run = jax.jit(functools.partial(meta.meta_gradient, loss, loss, remat=remat))
        outer_loss, hypergrad = run(params, inner, outer, jnp.float64(-1.5))
        assert hypergrad.dtype == jnp.float64
        h = 1e-5
        plus, _ = run(params, inner, outer, jnp.float64(-1.5 + h))
        minus, _ = run(params, inner, outer, jnp.float64(-1.5 - h))
        fd = (plus - minus) / (2 * h)
        assert abs(float(hypergrad)) > 1e-3  # a non-trivial derivative
        np.testing.assert_allclose(float(hypergrad), float(fd), rtol=1e-7)
        # The outer loss is the loss after unrolling, evaluated on the outer batch.
        final = jax.jit(meta.unrolled_sgd, static_argnums=0)(loss, params, inner, -1.5)
        np.testing.assert_allclose(float(outer_loss), float(jax.jit(loss)(final, outer)),
                                   rtol=1e-12)


def test_hypergradient_descent_finds_closed_form_lr():
    """f(w) = 0.5 a w^2, one SGD step: w1 = (1 - lr a) w0, so lr* = 1 / a exactly.

    The outer loss in u = log lr has curvature a |w0|^2 = 12.5 at the optimum, so a
    meta step of 0.08 (~1 / curvature) converges without oscillating."""
    a = 2.5
    quadratic = lambda w, batch: 0.5 * batch["a"] * jnp.sum(w ** 2)
    run = jax.jit(meta.learn_learning_rate, static_argnums=(0, 1, 6, 7))
    history = run(quadratic, lambda w, _: 0.5 * a * jnp.sum(w ** 2), jnp.array([1.0, -2.0]),
                  {"a": jnp.full((1,), a)}, None, float(np.log(0.05)), 60, 0.08)
    assert history.log_lr.shape == history.outer_loss.shape == (60,)
    lr = float(np.exp(history.final_log_lr))
    assert abs(lr - 1 / a) / (1 / a) < 0.05
    assert float(history.outer_loss[-1]) < 1e-3 * float(history.outer_loss[0])


def test_meta_bad_arguments():
    quadratic = lambda w, _: jnp.sum(w ** 2)
    with pytest.raises(ValueError, match="expected num_steps=3"):
        meta.unrolled_sgd(quadratic, jnp.ones(2), {"a": jnp.ones((2,))}, 0.0, 3)
    with pytest.raises(ValueError, match="num_steps: required"):
        meta.unrolled_sgd(quadratic, jnp.ones(2), None, 0.0)
    with pytest.raises(ValueError, match="meta_steps=0"):
        meta.learn_learning_rate(quadratic, quadratic, jnp.ones(2), None, None, 0.0, 0, 0.1,
                                 num_steps=1)


# ---------------------------------------------------------------- gradient flow


def build(section, input_shape, num_classes=3, seed=0, gain=1.0):
    """A model's graphdef and numpy-initialised params: kernels N(0, gain^2 / fan_in),
    biases 0 (abstract construction, so no per-layer initialisation is compiled)."""
    abstract = nnx.eval_shape(lambda: MODELS.build(
        section, field="model", input_shape=input_shape, num_classes=num_classes,
        rngs=nnx.Rngs(0)))
    graphdef, shapes, state = functional.split_model(abstract)
    rng = np.random.default_rng(seed)

    def init(leaf):
        if len(leaf.shape) == 1:
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.normal(size=leaf.shape) * gain / np.sqrt(fan_in), leaf.dtype)

    return graphdef, jax.tree.map(init, shapes), state


@pytest.fixture(scope="module")
def tiny_mlp():
    graphdef, params, state = build({"name": "mlp", "hidden": (5, 4), "activation": "tanh"},
                                    (6,))
    # Non-zero biases, so a dropped bias would show in the activations.
    params["layers"][0]["bias"] = jnp.linspace(-1.0, 1.0, 5)
    batch = numpy_batch((8, 6), seed=1)
    return graphdef, params, state, batch


def numpy_batch(x_shape, seed, num_classes=3):
    rng = np.random.default_rng(seed)
    return {"x": jnp.asarray(rng.normal(size=x_shape), jnp.float32),
            "y": jnp.asarray(rng.integers(0, num_classes, size=x_shape[:1]), jnp.int32)}


_FLOW = jax.jit(flow.gradient_flow, static_argnums=0, static_argnames="loss_fn")


def jitted_flow():
    return _FLOW


def test_flow_grad_norms_equal_direct_gradients(tiny_mlp):
    graphdef, params, state, batch = tiny_mlp
    update = jax.tree.map(lambda p: -0.01 * p, params)
    report = jitted_flow()(graphdef, params, state, batch, update=update)
    assert [layer.name for layer in report] == ["layers/0", "layers/1", "head"]

    def loss(p):
        logits, _ = functional.apply(graphdef, p, state, batch["x"])
        return flow.softmax_cross_entropy(logits, batch)

    grads = jax.jit(jax.grad(loss))(params)
    layer_grads = [grads["layers"][0], grads["layers"][1], grads["head"]]
    for layer, g in zip(report, layer_grads):
        expected = np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in g.values()))
        np.testing.assert_allclose(float(layer.param_grad_norm), expected, rtol=1e-5)
        np.testing.assert_allclose(float(layer.update_to_param), 0.01, rtol=1e-5)


def test_flow_activations_equal_numpy_forward(tiny_mlp):
    graphdef, params, state, batch = tiny_mlp
    report = jitted_flow()(graphdef, params, state, batch)
    h = np.asarray(batch["x"], np.float64)
    outputs = []
    for name in ("layers/0", "layers/1", "head"):
        layer = params["head"] if name == "head" else params["layers"][int(name[-1])]
        z = h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"])
        outputs.append(z)
        h = np.tanh(z)
    for layer, z in zip(report, outputs):
        np.testing.assert_allclose(float(layer.activation_norm), np.sqrt(np.mean(z ** 2)),
                                   rtol=1e-5)
        np.testing.assert_allclose(float(layer.activation_mean), z.mean(), atol=1e-5)
        np.testing.assert_allclose(float(layer.activation_std), z.std(), rtol=1e-5)
    table = flow.format_gradient_flow(report)
    assert table.splitlines()[2].startswith("layers/0") and "head" in table.splitlines()[-1]


def test_flow_on_small_cnn_orders_conv_dense_head():
    graphdef, params, state = build({"name": "cnn", "features": (2, 3), "hidden": 4},
                                    (4, 4, 1))
    batch = numpy_batch((2, 4, 4, 1), seed=2)
    report = jitted_flow()(graphdef, params, state, batch)
    assert [layer.name for layer in report] == ["convs/0", "convs/1", "dense", "head"]
    first = jax.lax.conv_general_dilated(  # the first conv's output, computed directly
        batch["x"], params["convs"][0]["kernel"], (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(float(report[0].activation_norm),
                               float(jnp.sqrt(jnp.mean(first ** 2))), rtol=1e-5)


def test_deep_sigmoid_vanishes_shallow_relu_he_does_not():
    batch = numpy_batch((16, 8), seed=3)
    # Small init: weights N(0, 0.25 / fan_in), so each sigmoid layer scales gradients by
    # about 0.5 * max sigmoid'(z) = 0.125.
    graphdef, params, state = build({"name": "mlp", "hidden": (8,) * 20,
                                     "activation": "sigmoid"}, (8,), gain=0.5)
    deep = jitted_flow()(graphdef, params, state, batch)
    assert len(deep) == 21
    assert deep[0].param_grad_norm < 1e-3 * deep[-1].param_grad_norm
    assert flow.diagnose(deep).startswith("VANISHING")

    # He init (He et al., 2015): N(0, 2 / fan_in).
    graphdef, params, state = build({"name": "mlp", "hidden": (16, 16), "activation": "relu"},
                                    (8,), gain=np.sqrt(2.0))
    shallow = jitted_flow()(graphdef, params, state, batch)
    assert flow.diagnose(shallow).startswith("gradient flow OK")


def test_diagnose_flags_exploding_and_nonfinite():
    def layer(name, grad):
        one = jnp.float32(1.0)
        return flow.LayerFlow(name, jnp.float32(grad), one, one, one, one)

    assert flow.diagnose([layer("a", 1e4), layer("b", 1.0)]).startswith("EXPLODING")
    assert "non-finite" in flow.diagnose([layer("a", np.nan), layer("b", 1.0)])
    with pytest.raises(ValueError, match="report"):
        flow.diagnose([])
    with pytest.raises(ValueError, match="'x'"):
        flow.gradient_flow(None, {}, {}, {"inputs": jnp.ones(2)})
