"""Hutchinson estimators and Lanczos / power-iteration spectra against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxdl import functional
from jaxdl.autodiff import products, spectrum, stochastic
from jaxdl.models import MODELS


def symmetric_matrix(eigenvalues, seed):
    """``Q diag(eigenvalues) Q^T`` with a random orthogonal Q (float64, numpy)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigenvalues),) * 2))
    return (q * np.asarray(eigenvalues)) @ q.T


def pytree_operator(matrix, shapes):
    """(matvec over a dict pytree, params_like) for an explicit [P, P] matrix."""
    params_like = {name: jnp.zeros(shape) for name, shape in shapes.items()}
    _, unravel = ravel_pytree(params_like)
    a = jnp.asarray(matrix, jnp.float32)
    return (lambda v: unravel(a @ ravel_pytree(v)[0])), params_like


def tridiagonal(alphas, betas):
    alphas, betas = np.asarray(alphas, np.float64), np.asarray(betas, np.float64)
    return np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)


SHAPES_20 = {"a": (8,), "b": (3, 4)}
SHAPES_30 = {"a": (10,), "b": (4, 5)}


# ---- Hutchinson ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quadratic_20():
    eigenvalues = np.random.default_rng(0).uniform(1.0, 3.0, size=20)
    return symmetric_matrix(eigenvalues, seed=1)


def test_hutchinson_trace_is_accurate_and_its_error_bar_consistent(quadratic_20):
    matvec, params_like = pytree_operator(quadratic_20, SHAPES_20)
    n = 2000
    estimate, std_error = jax.jit(lambda k: stochastic.hutchinson_trace(
        matvec, params_like, k, n, batch_size=250))(jax.random.key(0))
    exact = np.trace(quadratic_20)
    assert abs(estimate - exact) / exact < 0.05
    assert abs(estimate - exact) < 4 * std_error
    # Rademacher probes: Var[z^T A z] = 2 sum_{j != k} A_jk^2 (Hutchinson, 1990).
    off_diagonal = np.sum(quadratic_20**2) - np.sum(np.diag(quadratic_20) ** 2)
    predicted = np.sqrt(2 * off_diagonal / n)
    assert 0.85 < std_error / predicted < 1.15


def test_hutchinson_is_exact_for_a_diagonal_matrix():
    diagonal = np.linspace(-1.0, 4.0, 20)
    matvec, params_like = pytree_operator(np.diag(diagonal), SHAPES_20)
    (estimate, std_error), diag = jax.jit(lambda k: (
        stochastic.hutchinson_trace(matvec, params_like, k, 4),
        stochastic.hutchinson_diagonal(matvec, params_like, k, 3)))(jax.random.key(1))
    np.testing.assert_allclose(estimate, diagonal.sum(), rtol=1e-5)
    assert std_error < 1e-5
    np.testing.assert_allclose(ravel_pytree(diag)[0], diagonal, rtol=1e-5, atol=1e-6)


def test_hutchinson_diagonal_within_tolerance_and_batching_agrees(quadratic_20):
    matvec, params_like = pytree_operator(quadratic_20, SHAPES_20)
    key, n = jax.random.key(3), 2000

    @jax.jit
    def both(k):
        sequential = stochastic.hutchinson_diagonal(matvec, params_like, k, n)
        batched = stochastic.hutchinson_diagonal(matvec, params_like, k, n, batch_size=300)
        return sequential, batched  # 2000 = 6 * 300 + 200: the remainder path runs too

    sequential, batched = both(key)
    assert jax.tree.structure(sequential) == jax.tree.structure(params_like)
    estimate, exact = np.asarray(ravel_pytree(sequential)[0]), np.diag(quadratic_20)
    assert np.max(np.abs(estimate - exact) / exact) < 0.05
    # Same keys, same probes: batching changes only the summation order.
    np.testing.assert_allclose(ravel_pytree(batched)[0], estimate, rtol=1e-5, atol=1e-5)


def test_hutchinson_rejects_bad_counts(quadratic_20):
    matvec, params_like = pytree_operator(quadratic_20, SHAPES_20)
    with pytest.raises(ValueError, match="num_samples"):
        stochastic.hutchinson_trace(matvec, params_like, jax.random.key(0), 1)
    with pytest.raises(ValueError, match="batch_size"):
        stochastic.hutchinson_diagonal(matvec, params_like, jax.random.key(0), 4, batch_size=0)


# ---- Power iteration and Lanczos --------------------------------------------------------------

# Known spectrum: a separated top (10, 8, 6.5) above 27 eigenvalues in [-2, 3].
SPECTRUM_30 = np.concatenate([[10.0, 8.0, 6.5], np.linspace(-2.0, 3.0, 27)])


@pytest.fixture(scope="module")
def operator_30():
    matrix = symmetric_matrix(SPECTRUM_30, seed=2)
    matvec, params_like = pytree_operator(matrix, SHAPES_30)
    return matrix, matvec, params_like


def test_power_iteration_finds_the_top_eigenpair(operator_30):
    matrix, matvec, params_like = operator_30
    value, vector = jax.jit(lambda k: spectrum.power_iteration(matvec, params_like, k, 80))(
        jax.random.key(4))
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    assert abs(value - eigenvalues[-1]) / eigenvalues[-1] < 1e-4
    flat = np.asarray(ravel_pytree(vector)[0])
    assert abs(abs(flat @ eigenvectors[:, -1]) - 1.0) < 1e-4


def test_power_iteration_keeps_the_sign_of_a_negative_dominant_eigenvalue():
    matrix = symmetric_matrix(np.concatenate([[-6.0], np.linspace(-2.0, 2.0, 19)]), seed=3)
    matvec, params_like = pytree_operator(matrix, SHAPES_20)
    value, _ = jax.jit(lambda k: spectrum.power_iteration(matvec, params_like, k, 60))(
        jax.random.key(5))
    np.testing.assert_allclose(value, -6.0, rtol=1e-4)


def test_lanczos_top_eigenvalues_and_vectors_match_eigh(operator_30):
    matrix, matvec, params_like = operator_30

    @jax.jit
    def run(k):
        alphas, betas, basis = spectrum.lanczos(matvec, params_like, k, 20, return_basis=True)
        values, vectors = spectrum.top_eigenvalues(matvec, params_like, k, 3, 20,
                                                   return_vectors=True)
        return alphas, betas, basis, values, vectors

    alphas, betas, basis, values, vectors = run(jax.random.key(6))
    assert alphas.shape == (20,) and betas.shape == (19,) and basis.shape == (20, 30)
    basis = np.asarray(basis, np.float64)
    # Full reorthogonalization keeps Q orthonormal, and T = Q A Q^T.
    np.testing.assert_allclose(basis @ basis.T, np.eye(20), atol=1e-5)
    np.testing.assert_allclose(basis @ matrix @ basis.T,
                               tridiagonal(alphas, betas), atol=1e-4)
    np.testing.assert_allclose(values, np.sort(np.linalg.eigvalsh(matrix))[::-1][:3], rtol=1e-4)
    flat = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(vectors))  # [3, P]
    np.testing.assert_allclose(flat @ matrix, np.asarray(values)[:, None] * flat, atol=1e-3)


def test_lanczos_restarts_after_breakdown():
    # Three distinct eigenvalues: each Krylov space is invariant after 3 steps, so 9 steps
    # make three exact blocks, decoupled by betas of 0 (no NaN from dividing by beta ~ 0).
    matrix = symmetric_matrix(np.repeat([1.0, 2.0, 5.0], [10, 10, 10]), seed=4)
    matvec, params_like = pytree_operator(matrix, SHAPES_30)
    alphas, betas, basis = jax.jit(lambda k: spectrum.lanczos(
        matvec, params_like, k, 9, return_basis=True))(jax.random.key(7))
    assert np.all(np.isfinite(alphas)) and np.all(np.isfinite(basis))
    np.testing.assert_array_equal(betas[np.array([2, 5])], [0.0, 0.0])
    assert np.all(betas[np.array([0, 1, 3, 4, 6, 7])] > 1e-2)
    basis = np.asarray(basis, np.float64)
    np.testing.assert_allclose(basis @ basis.T, np.eye(9), atol=1e-5)
    ritz = np.linalg.eigvalsh(tridiagonal(alphas, betas))
    np.testing.assert_allclose(ritz, np.repeat([1.0, 2.0, 5.0], 3), atol=1e-4)


def test_lanczos_rejects_bad_sizes(operator_30):
    _, matvec, params_like = operator_30
    with pytest.raises(ValueError, match="num_iters"):
        spectrum.lanczos(matvec, params_like, jax.random.key(0), 31)
    with pytest.raises(ValueError, match="k must"):
        spectrum.top_eigenvalues(matvec, params_like, jax.random.key(0), 5, 4)
    with pytest.raises(ValueError, match="sigma"):
        spectrum.spectral_density(matvec, params_like, jax.random.key(0), num_probes=1,
                                  num_iters=4, sigma=0.0)


# ---- Spectral density ---------------------------------------------------------------------------

def test_spectral_density_concentrates_on_the_clusters():
    clusters = ((1.0, 1.5), (6.0, 7.0))
    eigenvalues = np.concatenate([np.linspace(*clusters[0], 12), np.linspace(*clusters[1], 18)])
    matrix = symmetric_matrix(eigenvalues, seed=5)
    matvec, params_like = pytree_operator(matrix, SHAPES_30)
    sigma, grid = 0.1, jnp.linspace(-1.0, 9.0, 1001)
    grid, density, (trace, std_error) = jax.jit(lambda k: (
        *spectrum.spectral_density(matvec, params_like, k, num_probes=32, num_iters=12,
                                   grid=grid, sigma=sigma),
        stochastic.hutchinson_trace(matvec, params_like, k, 32)))(jax.random.key(8))
    grid, density = np.asarray(grid, np.float64), np.asarray(density, np.float64)
    assert np.all(density >= 0)
    assert abs(np.trapezoid(density, grid) - 1.0) < 1e-3
    masses = [np.trapezoid(np.where((grid >= lo - 3 * sigma) & (grid <= hi + 3 * sigma),
                                    density, 0.0), grid) for lo, hi in clusters]
    assert sum(masses) > 0.99
    # Each cluster carries about its share of eigenvalues (12/30 and 18/30).
    np.testing.assert_allclose(masses, [0.4, 0.6], atol=0.1)
    # The first moment is sum_l w_l theta_l = v^T A v averaged over the probes: a Hutchinson
    # estimate of tr(A) / P, here with the very same probes (same key, same draws).
    mean = np.trapezoid(grid * density, grid)
    np.testing.assert_allclose(mean, trace / 30, rtol=1e-4)
    assert abs(mean - eigenvalues.mean()) < 4 * std_error / 30


def test_spectral_density_with_an_automatic_grid():
    matrix = symmetric_matrix(np.linspace(-3.0, 2.0, 20), seed=6)
    matvec, params_like = pytree_operator(matrix, SHAPES_20)
    grid, density = jax.jit(lambda k: spectrum.spectral_density(
        matvec, params_like, k, num_probes=2, num_iters=20, grid=400, sigma=0.2))(
        jax.random.key(9))
    assert grid.shape == density.shape == (400,)
    # With m = P, the Ritz values are the eigenvalues: the grid spans them +- 5 sigma.
    np.testing.assert_allclose([grid[0], grid[-1]], [-4.0, 3.0], atol=1e-3)
    assert abs(np.trapezoid(np.asarray(density), np.asarray(grid)) - 1.0) < 1e-3


# ---- On a real model's Hessian ------------------------------------------------------------------

def test_top_hessian_eigenvalues_of_a_jaxdl_mlp():
    model = MODELS.build({"name": "mlp", "hidden": (6,), "activation": "tanh"}, field="model",
                         input_shape=(5,), num_classes=3, rngs=nnx.Rngs(1))
    graphdef, params, state = functional.split_model(model)
    batch = {"x": jnp.asarray(np.random.default_rng(7).normal(size=(12, 5)), jnp.float32),
             "y": jnp.asarray(np.arange(12) % 3)}
    f = products.model_loss_fn(graphdef, state, batch)
    hvp = lambda v: products.hessian_vector_product(f, params, v)
    size = functional.count_params(params)  # 5*6 + 6 + 6*3 + 3 = 57

    @jax.jit
    def run(k):
        return (spectrum.top_eigenvalues(hvp, params, k, 3, size),
                stochastic.hutchinson_trace(hvp, params, k, 200)[0],
                products.hessian(f, params)[0])

    top, trace, matrix = run(jax.random.key(10))
    exact = np.linalg.eigvalsh(np.asarray(matrix, np.float64))
    np.testing.assert_allclose(top, exact[::-1][:3], rtol=1e-3, atol=1e-5)
    assert abs(trace - exact.sum()) < 0.2 * np.abs(exact).sum()
