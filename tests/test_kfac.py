"""K-FAC: factors vs exact Fisher blocks, the damping limit, and its place in optax chains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.optim.kfac import (
    CurvatureLinear,
    KFACState,
    kfac,
    name_curvature_layers,
    register_output,
    value_grad_and_curvature,
)


class TinyNet(nnx.Module):
    """3 -> 4 (tanh) -> 2 logits, both layers curvature layers."""

    def __init__(self, rngs):
        self.hidden = CurvatureLinear(3, 4, rngs=rngs)
        self.out = CurvatureLinear(4, 2, rngs=rngs)
        name_curvature_layers(self)

    def __call__(self, x, *, train=False, rngs=None):
        return self.out(jnp.tanh(self.hidden(x)))


def tiny_problem(batch_size, register=True):
    graphdef, params, state = functional.split_model(TinyNet(nnx.Rngs(0)))
    rng = np.random.default_rng(1)
    batch = {"x": jnp.asarray(rng.normal(size=(batch_size, 3)), jnp.float32),
             "y": jnp.asarray(rng.uniform(size=(batch_size, 2)), jnp.float32)}

    def loss_fn(p, model_state, b, key):
        logits, _ = functional.apply(graphdef, p, model_state, b["x"])
        if register:
            logits = register_output(logits, "bernoulli")
        value = optax.sigmoid_binary_cross_entropy(logits, b["y"]).sum(-1).mean()
        return value, ({}, model_state)

    return graphdef, params, state, batch, loss_fn


def layer_matrix_fn(graphdef, params, state, x, layer):
    """logits as a function of one layer's ``[d_in + 1, d_out]`` matrix ``[W; b]``."""

    def fn(matrix):
        p = jax.tree.map(lambda a: a, params)
        p[layer] = {"kernel": matrix[:-1], "bias": matrix[-1]}
        return functional.apply(graphdef, p, state, x)[0]

    return fn, jnp.concatenate([params[layer]["kernel"], params[layer]["bias"][None]], 0)


@pytest.mark.parametrize("layer", ["hidden", "out"])
def test_factors_match_the_exact_fisher_block_of_one_example(layer):
    """For one example the Fisher block is exactly ``A (x) E[G]``; E[G] by Monte Carlo."""
    graphdef, params, state, batch, loss_fn = tiny_problem(1)
    batch = {"x": batch["x"], "y": batch["y"]}
    rng = jax.random.key(0)

    @jax.jit
    def stats_for(key):
        return value_grad_and_curvature(loss_fn, params, state, batch, rng, key)[2][layer]

    samples = jax.vmap(stats_for)(jax.random.split(jax.random.key(3), 20000))
    a, g = np.asarray(samples["A"][0], np.float64), np.asarray(samples["G"].mean(0), np.float64)
    fn, matrix = layer_matrix_fn(graphdef, params, state, batch["x"], layer)
    jac = np.asarray(jax.jacobian(fn)(matrix), np.float64).reshape(2, -1)  # row-major vec
    probs = np.asarray(jax.nn.sigmoid(fn(matrix)[0]), np.float64)
    exact = jac.T @ np.diag(probs * (1 - probs)) @ jac
    approx = np.kron(a, g)
    assert np.abs(approx - exact).max() <= 0.04 * np.abs(exact).max()
    assert np.all(samples["A"][0] == samples["A"][1])  # A does not depend on the sample


def test_batch_factors_closed_form_with_the_empirical_fisher():
    """No registered output: G of the output layer is mean (p - y)(p - y)^T (closed form),
    A is mean [a, 1][a, 1]^T of its inputs."""
    graphdef, params, state, batch, loss_fn = tiny_problem(16, register=False)
    (loss, _), grads, stats = value_grad_and_curvature(
        loss_fn, params, state, batch, jax.random.key(0), jax.random.key(1))
    x = np.asarray(batch["x"], np.float64)
    w0, b0 = (np.asarray(params["hidden"][k], np.float64) for k in ("kernel", "bias"))
    w1, b1 = (np.asarray(params["out"][k], np.float64) for k in ("kernel", "bias"))
    h = np.tanh(x @ w0 + b0)
    residual = 1 / (1 + np.exp(-(h @ w1 + b1))) - np.asarray(batch["y"], np.float64)
    h1 = np.concatenate([h, np.ones((16, 1))], 1)
    np.testing.assert_allclose(stats["out"]["A"], h1.T @ h1 / 16, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["out"]["G"], residual.T @ residual / 16, rtol=1e-4,
                               atol=1e-6)
    # the gradient from the same pass is the ordinary gradient
    reference = jax.grad(lambda p: loss_fn(p, state, batch, None)[0])(params)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def one_update(tx, problem=None, steps=1):
    graphdef, params, state, batch, loss_fn = problem or tiny_problem(8)

    @jax.jit
    def step(params, opt_state, key):
        (loss, _), grads, stats = value_grad_and_curvature(
            loss_fn, params, state, batch, jax.random.key(0), key)
        updates, opt_state = tx.update(grads, opt_state, params, curvature=stats)
        return optax.apply_updates(params, updates), opt_state, updates, grads

    opt_state = tx.init(params)
    for t in range(steps):
        params, opt_state, updates, grads = step(params, opt_state, jax.random.key(t))
    return updates, grads, params, opt_state


def test_infinite_damping_approaches_scaled_sgd():
    lam, eta = 1e8, 0.1
    updates, grads, _, _ = one_update(kfac(eta * lam, damping=lam, momentum=0.0))
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
        np.testing.assert_allclose(u, -eta * g, rtol=2e-3, atol=1e-3 * eta * np.abs(g).max())


def test_preconditioner_is_the_damped_kronecker_inverse():
    """One step without momentum: ``U = (A + pi sqrt(l) I)^-1 V (G + sqrt(l)/pi I)^-1``."""
    lam = 0.3
    problem = tiny_problem(8)
    graphdef, params, state, batch, loss_fn = problem
    _, grads, stats = value_grad_and_curvature(loss_fn, params, state, batch,
                                               jax.random.key(0), jax.random.key(0))
    updates, *_ = one_update(kfac(1.0, damping=lam, momentum=0.0), problem)
    a, g = (np.asarray(stats["out"][k], np.float64) for k in ("A", "G"))
    pi = np.sqrt((np.trace(a) / 5) / (np.trace(g) / 2))
    v = np.concatenate([grads["out"]["kernel"], grads["out"]["bias"][None]], 0)
    u = np.linalg.solve(a + pi * np.sqrt(lam) * np.eye(5), v) @ np.linalg.inv(
        g + np.sqrt(lam) / pi * np.eye(2))
    np.testing.assert_allclose(-updates["out"]["kernel"], u[:4], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(-updates["out"]["bias"], u[4], rtol=1e-3, atol=1e-6)


def test_composes_with_chain_inject_hyperparams_and_multisteps():
    base, *_ = one_update(kfac(0.05, damping=0.1), steps=2)
    chained, *_ = one_update(optax.chain(optax.clip_by_global_norm(1e6),
                                         kfac(0.05, damping=0.1)), steps=2)
    injected_tx = optax.inject_hyperparams(
        kfac, static_args=("inverse_every", "adapt_damping", "damping_every",
                           "curvature_subsample", "adaptive"))(
        learning_rate=0.05, damping=0.1)
    injected, *_ = one_update(injected_tx, steps=2)
    for a, b, c in zip(*map(jax.tree.leaves, (base, chained, injected))):
        np.testing.assert_allclose(b, a, rtol=1e-6)
        np.testing.assert_allclose(c, a, rtol=1e-6)
    multi = optax.MultiSteps(kfac(0.05, damping=0.1), every_k_schedule=2)
    updates, _, _, opt_state = one_update(multi, steps=1)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))
    inner = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, KFACState))
             if isinstance(s, KFACState)]
    assert len(inner) == 1


def test_missing_statistics_are_named_before_compilation():
    tx = kfac(0.1)
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}
    with pytest.raises(ValueError, match=r"layers \['dense'\].*CurvatureLinear"):
        tx.update(params, tx.init(params), params, curvature={})
    with pytest.raises(ValueError, match="optimizer.damping=0"):
        kfac(0.1, damping=0.0)


class TiedNet(nnx.Module):
    """One 3 -> 3 curvature layer applied twice: ``W tanh(W x + b) + b``."""

    def __init__(self, rngs):
        self.shared = CurvatureLinear(3, 3, rngs=rngs)
        name_curvature_layers(self)

    def __call__(self, x, *, train=False, rngs=None):
        return self.shared(jnp.tanh(self.shared(x)))


def test_tied_layer_sums_the_contributions_of_its_uses():
    """A = mean over uses of [a, 1][a, 1]^T / B, G = sum over uses of g g^T / B, checked
    against the closed form of a squared-error loss (empirical Fisher)."""
    graphdef, params, state = functional.split_model(TiedNet(nnx.Rngs(0)))
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))

    def loss_fn(p, model_state, batch, key):
        out, _ = functional.apply(graphdef, p, model_state, batch["x"])
        return 0.5 * jnp.mean(jnp.sum((out - batch["y"]) ** 2, -1)), ({}, model_state)

    batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
    _, _, stats = value_grad_and_curvature(loss_fn, params, state, batch, None,
                                           jax.random.key(0))
    w, b = (np.asarray(params["shared"][k], np.float64) for k in ("kernel", "bias"))
    s1 = x @ w + b
    h = np.tanh(s1)
    g2 = h @ w + b - y
    g1 = (g2 @ w.T) * (1 - h**2)
    ones = np.ones((8, 1))
    a1, a2 = np.concatenate([x, ones], 1), np.concatenate([h, ones], 1)
    np.testing.assert_allclose(stats["shared"]["A"], (a1.T @ a1 + a2.T @ a2) / 16,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["shared"]["G"], (g1.T @ g1 + g2.T @ g2) / 8,
                               rtol=1e-4, atol=1e-6)
