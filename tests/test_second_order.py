"""Newton, L-BFGS, natural gradient and Hessian-free through the one train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxdl import functional
from jaxdl.optim import build_optimizer
from jaxdl.optim.kfac import register_output
from jaxdl.train import create_train_state, make_train_step

RNG = np.random.default_rng(0)
Q = RNG.normal(size=(5, 5))
H = Q @ np.diag([100.0, 10.0, 1.0, 0.1, 0.01]) @ Q.T  # condition number 1e4
B = RNG.normal(size=5)
W_STAR = np.linalg.solve(H, B)


def quadratic_loss(params, model_state, batch, rng):
    w = params["w"]
    return 0.5 * w @ jnp.asarray(H, jnp.float32) @ w - jnp.asarray(B, jnp.float32) @ w, (
        {}, model_state)


def run(section, loss_fn, params, batch, steps):
    tx, _ = build_optimizer({"schedule": "constant", **section}, 100)
    state = create_train_state(params, {}, tx, jax.random.key(0))
    step = make_train_step(loss_fn, tx, donate=False)
    for _ in range(steps):
        state, _ = step(state, batch)
    return state


def test_newton_solves_a_quadratic_in_one_step():
    state = run({"name": "newton", "learning_rate": 1.0}, quadratic_loss,
                {"w": jnp.zeros(5)}, {"x": jnp.zeros(1)}, 1)
    np.testing.assert_allclose(state.params["w"], W_STAR, rtol=2e-3, atol=1e-3)


def test_lbfgs_reaches_the_minimum_of_an_ill_conditioned_quadratic():
    state = run({"name": "lbfgs", "learning_rate": 1.0}, quadratic_loss,
                {"w": jnp.zeros(5)}, {"x": jnp.zeros(1)}, 30)
    np.testing.assert_allclose(state.params["w"], W_STAR, rtol=1e-2, atol=1e-2)


class TinyNet(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(3, 4, rngs=rngs)
        self.out = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x, *, train=False, rngs=None):
        return self.out(jnp.tanh(self.hidden(x)))


def test_natural_gradient_equals_explicit_inverse_fisher_times_gradient():
    graphdef, params, _ = functional.split_model(TinyNet(nnx.Rngs(0)))
    x = jnp.asarray(RNG.normal(size=(6, 3)), jnp.float32)
    y = jnp.asarray(RNG.uniform(size=(6, 2)), jnp.float32)

    def logits_of(p):
        return functional.apply(graphdef, p, {}, x)[0]

    def loss_fn(p, model_state, batch, rng):
        z = register_output(logits_of(p), "bernoulli")
        return jnp.mean(jnp.sum(jax.nn.softplus(z) - batch["y"] * z, -1)), ({}, model_state)

    lam, lr = 1e-3, 0.5
    state = run({"name": "natural_gradient", "learning_rate": lr, "damping": lam}, loss_fn,
                params, {"x": x, "y": y}, 1)
    flat, unravel = ravel_pytree(params)
    jac = np.asarray(jax.jacobian(lambda f: logits_of(unravel(f)))(flat), np.float64)
    p = np.asarray(jax.nn.sigmoid(logits_of(params)), np.float64)
    fisher = np.einsum("bon,bo,bom->nm", jac, p * (1 - p), jac) / 6
    grad = np.asarray(ravel_pytree(jax.grad(lambda q: loss_fn(q, {}, {"y": y}, None)[0])(
        params))[0], np.float64)
    expected = flat - lr * np.linalg.solve(fisher + lam * np.eye(len(flat)), grad)
    np.testing.assert_allclose(ravel_pytree(state.params)[0], expected, rtol=2e-3, atol=2e-4)


def test_hessian_free_solves_least_squares_in_one_step():
    """Linear model + squared error: Gauss-Newton = Hessian, so CG with as many iterations
    as parameters gives the least-squares solution in one step."""
    x = RNG.normal(size=(20, 3)).astype(np.float32)
    y = RNG.normal(size=(20, 2)).astype(np.float32)

    def loss_fn(p, model_state, batch, rng):
        z = register_output(batch["x"] @ p["kernel"] + p["bias"], "gaussian")
        return 0.5 * jnp.mean(jnp.sum((z - batch["y"]) ** 2, -1)), ({}, model_state)

    params = {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}
    state = run({"name": "hessian_free", "learning_rate": 1.0, "damping": 1e-6,
                 "cg_iters": 8}, loss_fn, params, {"x": x, "y": y}, 1)
    design = np.concatenate([x, np.ones((20, 1))], 1)
    solution = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(state.params["kernel"], solution[:3], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(state.params["bias"], solution[3], rtol=1e-3, atol=1e-4)


def test_missing_curvature_inputs_are_named():
    tx, _ = build_optimizer({"name": "hessian_free", "learning_rate": 1.0}, 10)
    params = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="hessian_free needs update\\(..., fisher_vector="):
        tx.update(params, tx.init(params), params)
