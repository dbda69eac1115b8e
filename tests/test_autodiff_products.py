"""Derivative products (jaxdl.autodiff.products) against explicit Jacobians and Hessians."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxdl import functional
from jaxdl.autodiff import products
from jaxdl.models import MODELS

RTOL, ATOL = 1e-4, 1e-5


def normal(seed, shape):
    """Random inputs from numpy: no per-shape XLA compilation in the tests."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def random_tree(seed, shapes):
    return {name: normal(seed * 100 + i, shape) for i, (name, shape) in enumerate(shapes.items())}


PARAM_SHAPES = {"w1": (4, 5), "b1": (5,), "w2": (5, 3)}  # P = 20 + 5 + 15 = 40


def mlp_apply(params, x):
    """A tiny tanh MLP: x [batch, 4] -> logits [batch, 3]."""
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


def mean_cross_entropy(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@pytest.fixture(scope="module")
def problem():
    params = random_tree(0, PARAM_SHAPES)
    v = random_tree(1, PARAM_SHAPES)
    x = normal(2, (6, 4))
    y = jnp.asarray([0, 2, 1, 1, 0, 2])
    return params, v, x, y


def loss(params, x, y):
    return mean_cross_entropy(mlp_apply(params, x), y)


def flat(tree):
    return np.asarray(ravel_pytree(tree)[0])


def explicit_hessian(f, params):
    vec, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda w: f(unravel(w))))(vec))


# ---- JVP / VJP / Jacobian --------------------------------------------------------------

def vector_field(x):
    """R^3 -> R^5, nonlinear in every input."""
    return jnp.stack([x[0] * x[1], jnp.sin(x[2]), x[0] ** 3, jnp.exp(x[1] - x[2]), x.sum() ** 2])


def test_jvp_and_vjp_match_explicit_jacobian():
    x, t, c = jnp.array([0.3, -1.2, 0.7]), jnp.array([1.0, 2.0, -0.5]), jnp.arange(5.0) - 2
    jac = np.asarray(jax.jit(jax.jacfwd(vector_field))(x))  # [5, 3]
    out, tangent_out = products.jvp(vector_field, (x,), (t,))
    np.testing.assert_allclose(out, vector_field(x), rtol=1e-6)
    np.testing.assert_allclose(tangent_out, jac @ np.asarray(t), rtol=RTOL, atol=ATOL)
    _, (cotangent_in,) = products.vjp(vector_field, (x,), c)
    np.testing.assert_allclose(cotangent_in, jac.T @ np.asarray(c), rtol=RTOL, atol=ATOL)


def test_vjp_over_two_pytree_arguments(problem):
    params, _, x, y = problem
    c = normal(9, (6, 3))
    _, (d_params, d_x) = products.vjp(mlp_apply, (params, x), c)
    jac_params = jax.jit(jax.jacrev(mlp_apply))(params, x)
    for name in params:  # jac[name]: [6, 3, *shape]
        expected = np.tensordot(np.asarray(c), np.asarray(jac_params[name]), axes=2)
        np.testing.assert_allclose(d_params[name], expected, rtol=RTOL, atol=ATOL)
    jac_x = np.asarray(jax.jit(jax.jacrev(mlp_apply, argnums=1))(params, x))  # [6, 3, 6, 4]
    np.testing.assert_allclose(d_x, np.tensordot(np.asarray(c), jac_x, axes=2), atol=ATOL)


def test_jvp_rejects_mismatched_tangents():
    with pytest.raises(ValueError, match="tangents"):
        products.jvp(vector_field, (jnp.ones(3),), (jnp.ones(3), jnp.ones(3)))
    with pytest.raises(ValueError, match="primals"):
        products.jvp(vector_field, jnp.ones(3), (jnp.ones(3),))


def test_choose_jacobian_mode_follows_the_pass_count():
    assert products.choose_jacobian_mode(3, 50) == "forward"
    assert products.choose_jacobian_mode(50, 1) == "reverse"
    assert products.choose_jacobian_mode(7, 7) == "forward"
    with pytest.raises(ValueError, match="in_size"):
        products.choose_jacobian_mode(0, 3)


@pytest.mark.parametrize(("in_size", "out_size", "engine"),
                         [(3, 50, "forward"), (50, 1, "reverse")])
def test_jacobian_auto_uses_the_cheaper_engine(monkeypatch, in_size, out_size, engine):
    weights = normal(4, (out_size, in_size))
    f = lambda x: jnp.tanh(weights @ x)
    x = normal(5, (in_size,))
    used = []
    for name, fn in list(products._JACOBIAN_ENGINES.items()):
        spy = lambda g, _fn=fn, _name=name: (used.append(_name), _fn(g))[1]
        monkeypatch.setitem(products._JACOBIAN_ENGINES, name, spy)
    expected = np.asarray(jax.jit(jax.jacrev(f))(x))
    auto = jax.jit(lambda a: products.jacobian(f, a))(x)  # the engine is picked at trace time
    np.testing.assert_allclose(auto, expected, rtol=RTOL, atol=ATOL)
    assert used == [engine]
    for mode in ("forward", "reverse"):
        forced = jax.jit(lambda a, m=mode: products.jacobian(f, a, mode=m))(x)
        np.testing.assert_allclose(forced, expected,
                                   rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="mode"):
        products.jacobian(f, x, mode="sideways")


# ---- Hessian-vector products and the dense Hessian ---------------------------------------

@pytest.mark.parametrize("hvp", [products.hessian_vector_product,
                                 products.hvp_reverse_over_reverse])
def test_hvp_matches_explicit_hessian(problem, hvp):
    params, v, x, y = problem
    hess = explicit_hessian(lambda p: loss(p, x, y), params)
    result = jax.jit(lambda p, u: hvp(loss, p, u, x, y))(params, v)
    assert jax.tree.structure(result) == jax.tree.structure(params)
    np.testing.assert_allclose(flat(result), hess @ flat(v), rtol=RTOL, atol=ATOL)


def test_dense_hessian_matches_jax_hessian_blocks(problem):
    params, _, x, y = problem
    def dense(p):
        matrix, unravel = products.hessian(loss, p, x, y)
        return matrix, unravel(matrix[0])

    matrix, first_row = jax.jit(dense)(params)
    assert matrix.shape == (40, 40)
    nested = jax.jit(jax.hessian(loss))(params, x, y)  # nested[a][b]: [*shape_a, *shape_b]
    names = sorted(params)  # ravel_pytree follows the (sorted) dict leaf order
    sizes = {n: params[n].size for n in names}
    blocks = [[np.asarray(nested[a][b]).reshape(sizes[a], sizes[b]) for b in names]
              for a in names]
    np.testing.assert_allclose(matrix, np.block(blocks), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(matrix, matrix.T, atol=ATOL)
    # unravel maps a flat row back to the params pytree: row 0 is d/d b1[0] of the gradient.
    assert jax.tree.structure(first_row) == jax.tree.structure(params)
    np.testing.assert_allclose(first_row["w2"], nested["b1"]["w2"][0], rtol=RTOL, atol=ATOL)


def test_dense_hessian_refuses_large_params():
    params = {"w": jnp.zeros((50, 100)), "b": jnp.zeros(1)}  # 5001 scalars
    with pytest.raises(ValueError, match=r"params has 5001 scalars"):
        products.hessian(lambda p: jnp.sum(p["w"] ** 2), params)


# ---- Gauss-Newton and Fisher ---------------------------------------------------------------

def explicit_ggn(apply_fn, loss_fn, params, x, y):
    """J^T H_L J from explicit matrices: J [B*C, P], H_L [B*C, B*C]."""
    vec, unravel = ravel_pytree(params)
    outputs = apply_fn(params, x)
    jac = np.asarray(jax.jit(jax.jacfwd(lambda w: apply_fn(unravel(w), x).reshape(-1)))(vec))
    loss_of_flat = lambda z: loss_fn(z.reshape(outputs.shape), y)
    hess_out = np.asarray(jax.jit(jax.hessian(loss_of_flat))(outputs.reshape(-1)))
    return jac.T @ hess_out @ jac


def test_ggn_vector_product_matches_explicit_matrices(problem):
    params, v, x, y = problem
    ggn = explicit_ggn(mlp_apply, mean_cross_entropy, params, x, y)
    result = jax.jit(lambda p, u: products.gauss_newton_vector_product(
        mlp_apply, mean_cross_entropy, p, u, x, y))(params, v)
    np.testing.assert_allclose(flat(result), ggn @ flat(v), rtol=RTOL, atol=ATOL)
    # For this nonlinear model the GGN drops the residual term, so it is not the Hessian.
    hess = explicit_hessian(lambda p: loss(p, x, y), params)
    assert np.linalg.norm(hess @ flat(v) - flat(result)) > 1e-2 * np.linalg.norm(flat(result))
    # Squared error: H_L = 2/N I, so G = 2/N J^T J.
    mse = lambda z, t: jnp.mean((z - t) ** 2)
    targets = normal(7, (6, 3))
    result = jax.jit(lambda p, u: products.gauss_newton_vector_product(
        mlp_apply, mse, p, u, x, targets))(params, v)
    vec, unravel = ravel_pytree(params)
    jac = np.asarray(jax.jit(jax.jacfwd(lambda w: mlp_apply(unravel(w), x).reshape(-1)))(vec))
    np.testing.assert_allclose(flat(result), 2 / 18 * jac.T @ (jac @ flat(v)),
                               rtol=RTOL, atol=ATOL)


def test_ggn_equals_hessian_for_a_linear_model(problem):
    _, _, x, y = problem
    linear_apply = lambda p, inputs: inputs @ p["w"] + p["b"]
    params = random_tree(11, {"w": (4, 3), "b": (3,)})
    v = random_tree(12, {"w": (4, 3), "b": (3,)})
    f = lambda p: mean_cross_entropy(linear_apply(p, x), y)
    ggn_v, hvp = jax.jit(lambda p, u: (
        products.gauss_newton_vector_product(linear_apply, mean_cross_entropy, p, u, x, y),
        products.hessian_vector_product(f, p, u)))(params, v)
    np.testing.assert_allclose(flat(ggn_v), flat(hvp), rtol=RTOL, atol=ATOL)


def test_true_fisher_equals_ggn_and_its_closed_form(problem):
    params, v, x, y = problem
    fisher_v = jax.jit(lambda p, u: products.fisher_vector_product(mlp_apply, p, u, x))(
        params, v)
    ggn_v = jax.jit(lambda p, u: products.gauss_newton_vector_product(
        mlp_apply, mean_cross_entropy, p, u, x, y))(params, v)
    np.testing.assert_allclose(flat(fisher_v), flat(ggn_v), rtol=RTOL, atol=ATOL)
    # Closed form: mean_i J_i^T (diag p_i - p_i p_i^T) J_i v, J_i [3, P] per example.
    vec, unravel = ravel_pytree(params)
    jac = np.asarray(jax.jit(jax.jacfwd(lambda w: mlp_apply(unravel(w), x)))(vec))  # [6, 3, P]
    probs = np.asarray(jax.nn.softmax(mlp_apply(params, x)))
    expected = sum(jac[i].T @ (np.diag(p) - np.outer(p, p)) @ jac[i] @ flat(v)
                   for i, p in enumerate(probs)) / len(probs)
    np.testing.assert_allclose(flat(fisher_v), expected, rtol=RTOL, atol=ATOL)


def test_empirical_fisher_matches_mean_outer_product_of_per_example_grads(problem):
    params, v, x, y = problem
    fisher_v = jax.jit(lambda p, u: products.fisher_vector_product(
        mlp_apply, p, u, x, y=y, kind="empirical"))(params, v)
    vec, unravel = ravel_pytree(params)
    per_example = lambda w: optax.softmax_cross_entropy_with_integer_labels(
        mlp_apply(unravel(w), x), y)
    grads = np.asarray(jax.jit(jax.jacrev(per_example))(vec))  # [6, P]: row i = g_i
    expected = sum(np.outer(g, g) for g in grads) @ flat(v) / len(grads)
    np.testing.assert_allclose(flat(fisher_v), expected, rtol=RTOL, atol=ATOL)
    # It is a different matrix from the true Fisher (labels vs model samples).
    true_v = jax.jit(lambda p, u: products.fisher_vector_product(mlp_apply, p, u, x))(params, v)
    assert np.linalg.norm(flat(true_v) - expected) > 1e-2 * np.linalg.norm(expected)


def test_fisher_rejects_bad_arguments(problem):
    params, v, x, _ = problem
    with pytest.raises(ValueError, match="kind='empirical'"):
        products.fisher_vector_product(mlp_apply, params, v, x, kind="empirical")
    with pytest.raises(ValueError, match="kind="):
        products.fisher_vector_product(mlp_apply, params, v, x, kind="natural")
    with pytest.raises(ValueError, match=r"logits \[batch, classes\]"):
        products.fisher_vector_product(lambda p, a: mlp_apply(p, a)[None], params, v, x)


# ---- A real jaxdl model ----------------------------------------------------------------------

def test_hvp_on_a_jaxdl_mlp_matches_explicit_hessian():
    model = MODELS.build({"name": "mlp", "hidden": (8,), "activation": "tanh"}, field="model",
                         input_shape=(6,), num_classes=3, rngs=nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    batch = {"x": normal(20, (10, 6)), "y": jnp.asarray([0, 1, 2, 2, 1, 0, 0, 1, 2, 1])}
    f = products.model_loss_fn(graphdef, state, batch)
    apply_fn = products.model_apply_fn(graphdef, state)
    v = jax.tree.map(lambda p: normal(22, p.shape), params)

    @jax.jit  # one compilation for every quantity
    def run(p, u):
        return (f(p), products.hessian(f, p)[0], products.hessian_vector_product(f, p, u),
                products.fisher_vector_product(apply_fn, p, u, batch["x"]),
                products.gauss_newton_vector_product(apply_fn, mean_cross_entropy, p, u,
                                                     batch["x"], batch["y"]))

    loss_value, matrix, hvp, fisher_v, ggn_v = run(params, v)
    # The loss is the mean cross-entropy of the MLP, written out in numpy.
    hidden = np.tanh(np.asarray(batch["x"]) @ params["layers"][0]["kernel"]
                     + params["layers"][0]["bias"])
    logits = hidden @ params["head"]["kernel"] + params["head"]["bias"]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected_loss = -log_probs[np.arange(10), np.asarray(batch["y"])].mean()
    np.testing.assert_allclose(loss_value, expected_loss, rtol=1e-5)
    assert matrix.shape == (83, 83)  # P = 6*8 + 8 + 8*3 + 3
    np.testing.assert_allclose(flat(hvp), np.asarray(matrix) @ flat(v), rtol=RTOL, atol=ATOL)
    # The model's own apply_fn plugs into the Fisher product, equal to its GGN.
    np.testing.assert_allclose(flat(fisher_v), flat(ggn_v), rtol=RTOL, atol=ATOL)
