"""Eigenvalues and spectral density of a symmetric operator given only as ``matvec``.

``matvec(v) -> pytree like v`` (e.g. a Hessian-vector product); the pytree is flattened
with ``ravel_pytree`` to a vector of P entries so the iterations are plain linear
algebra.

* :func:`power_iteration`: the largest-magnitude eigenpair (von Mises, 1929).
* :func:`lanczos`: the tridiagonal ``T = Q A Q^T`` of an m-step Krylov basis (the
  orthonormal rows of ``Q [m, P]``) with full reorthogonalization (Lanczos, 1950; Paige,
  1972 for why plain Lanczos loses orthogonality); its eigenvalues (Ritz values) converge
  to the extreme eigenvalues first, which :func:`top_eigenvalues` returns. On breakdown
  (an invariant Krylov space, e.g. an operator with few distinct eigenvalues) it
  restarts from a new orthogonal direction.
* :func:`spectral_density`: stochastic Lanczos quadrature (Golub & Meurant, 1994; Ubaru,
  Chen & Saad, 2017), as used for neural-network Hessians by Ghorbani, Krishnan & Xiao
  (2019).

Memory: Lanczos stores the basis as a dense ``[m, P]`` matrix -- fine for the model sizes
used here, m times the parameter memory in general. All functions are pure; call them
inside ``jax.jit`` with ``num_iters``/``k``/``num_probes`` as Python ints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any
MatVec = Callable[[PyTree], PyTree]


def _flat_operator(matvec: MatVec, params_like: PyTree):
    """(flat matvec [P] -> [P], unravel, P, dtype) for an operator over pytrees."""
    flat, unravel = ravel_pytree(params_like)
    dtype = flat.dtype if jnp.issubdtype(flat.dtype, jnp.floating) else jnp.float32

    def flat_matvec(w: jax.Array) -> jax.Array:
        return ravel_pytree(matvec(unravel(w.astype(flat.dtype))))[0].astype(dtype)

    return flat_matvec, unravel, flat.shape[0], dtype


def _check_positive(name: str, value: int, upper: int | None = None, what: str = "") -> None:
    if not isinstance(value, int) or value < 1 or (upper is not None and value > upper):
        bound = f" and <= {upper}{what}" if upper is not None else ""
        raise ValueError(f"{name} must be an int >= 1{bound}, got {value!r}.")


def _unit_rademacher(key: jax.Array, size: int, dtype) -> jax.Array:
    z = jax.random.rademacher(key, (size,), dtype=jnp.int32).astype(dtype)
    return z / jnp.sqrt(jnp.asarray(size, dtype))


def power_iteration(matvec: MatVec, params_like: PyTree, key: jax.Array,
                    num_iters: int) -> tuple[jax.Array, PyTree]:
    """Largest-magnitude eigenpair of a symmetric operator by power iteration.

    Convergence is linear with ratio ``|lambda_2 / lambda_1|`` (slow for a small gap;
    prefer :func:`top_eigenvalues` there; no convergence when ``lambda`` and ``-lambda``
    are both dominant). The eigenvalue is the final Rayleigh quotient ``v^T A v``, so its
    sign is kept.

    Args:
      matvec: ``v -> A v`` over pytrees like ``params_like``; A symmetric.
      params_like: pytree fixing the structure (values unused). key: start-vector key.
      num_iters: number of matvecs before the final Rayleigh quotient (>= 1).

    Returns:
      ``(eigenvalue scalar, eigenvector pytree like params_like with unit norm)``.
    """
    _check_positive("num_iters", num_iters)
    flat_matvec, unravel, size, dtype = _flat_operator(matvec, params_like)
    start = jax.random.normal(key, (size,), dtype)
    start = start / jnp.linalg.norm(start)

    def step(_, v):
        w = flat_matvec(v)
        # A zero image (v in the null space) leaves v unchanged instead of dividing by 0.
        norm = jnp.linalg.norm(w)
        return jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1.0), v)

    v = jax.lax.fori_loop(0, num_iters, step, start)
    return jnp.vdot(v, flat_matvec(v)), unravel(v)


def _lanczos_flat(flat_matvec: Callable[[jax.Array], jax.Array], start: jax.Array,
                  num_iters: int):
    """m-step Lanczos from a unit ``start`` with full reorthogonalization.

    Returns ``(alphas [m], betas [m-1], basis [m, P])``. On breakdown (``beta ~ 0``: the
    Krylov space is invariant) the next vector is a fresh one orthogonal to the basis and
    the coupling beta is 0, so T stays exactly ``Q^T A Q`` in block form.
    """
    size, dtype = start.shape[0], start.dtype
    tolerance = 100 * jnp.finfo(dtype).eps

    def orthogonalize(w, basis):
        # Classical Gram-Schmidt twice ("twice is enough"); unused rows of basis are 0.
        w = w - basis.T @ (basis @ w)
        return w - basis.T @ (basis @ w)

    def step(j, carry):
        basis, alphas, betas, scale = carry
        q = basis[j]
        w = flat_matvec(q)
        scale = jnp.maximum(scale, jnp.linalg.norm(w))
        alpha = jnp.vdot(q, w)
        w = orthogonalize(w, basis)
        beta = jnp.linalg.norm(w)
        broke_down = beta <= tolerance * jnp.maximum(scale, jnp.finfo(dtype).tiny)

        def restart(_):
            # The coordinate vector least covered by the basis: its squared norm in
            # span(Q) is at most (j + 1) / P < 1, so what remains after projection is
            # bounded away from 0 -- deterministic, and no random kernel in the loop.
            coordinate = jnp.argmin(jnp.sum(basis**2, axis=0))
            fresh = orthogonalize(jax.nn.one_hot(coordinate, size, dtype=dtype), basis)
            return fresh / jnp.linalg.norm(fresh)

        next_q = jax.lax.cond(broke_down, restart, lambda w: w / beta, w)
        beta = jnp.where(broke_down, 0.0, beta)
        # The basis has a spare last row so step m - 1 can write unconditionally.
        basis = basis.at[j + 1].set(next_q)
        return basis, alphas.at[j].set(alpha), betas.at[j].set(beta), scale

    basis = jnp.zeros((num_iters + 1, size), dtype).at[0].set(start)
    init = (basis, jnp.zeros(num_iters, dtype), jnp.zeros(num_iters, dtype),
            jnp.zeros((), dtype))
    basis, alphas, betas, _ = jax.lax.fori_loop(0, num_iters, step, init)
    return alphas, betas[:-1], basis[:num_iters]


def lanczos(matvec: MatVec, params_like: PyTree, key: jax.Array, num_iters: int, *,
            return_basis: bool = False) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Lanczos tridiagonalization with full reorthogonalization (Lanczos, 1950).

    Args:
      matvec: ``v -> A v`` over pytrees like ``params_like``; A symmetric.
      params_like: pytree fixing the structure (values unused).
      key: PRNG key for the (normalized Rademacher) start vector.
      num_iters: m, the Krylov dimension, ``1 <= m <= P``.
      return_basis: also return the orthonormal basis Q.

    Returns:
      ``(alphas [m], betas [m-1], basis [m, P] or None)``: T has diagonal alphas and
      off-diagonal betas, ``T = Q A Q^T`` with the rows of Q orthonormal.
    """
    flat_matvec, _, size, dtype = _flat_operator(matvec, params_like)
    _check_positive("num_iters", num_iters, size, " (the number of parameters P)")
    alphas, betas, basis = _lanczos_flat(flat_matvec, _unit_rademacher(key, size, dtype),
                                         num_iters)
    return alphas, betas, (basis if return_basis else None)


def tridiagonal(alphas: jax.Array, betas: jax.Array) -> jax.Array:
    """The dense symmetric tridiagonal matrix ``[m, m]`` with diagonal alphas [m] and
    off-diagonals betas [m-1]."""
    return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def top_eigenvalues(matvec: MatVec, params_like: PyTree, key: jax.Array, k: int,
                    num_iters: int, *, return_vectors: bool = False):
    """The k largest (algebraic) eigenvalues from the Ritz values of m-step Lanczos.

    Extreme eigenvalues converge first; well-separated ones are accurate for m a few times
    k. With ``m = P`` the result is exact up to rounding.

    Returns:
      eigenvalues ``[k]`` in descending order, and with ``return_vectors=True`` also the
      Ritz vectors as a pytree like params_like with a leading axis ``[k, ...]``.
    """
    _check_positive("k", k, num_iters, " (num_iters)")
    alphas, betas, basis = lanczos(matvec, params_like, key, num_iters, return_basis=True)
    ritz_values, ritz_coords = jnp.linalg.eigh(tridiagonal(alphas, betas))
    values = ritz_values[::-1][:k]
    if not return_vectors:
        return values
    _, unravel = ravel_pytree(params_like)
    vectors = ritz_coords[:, ::-1][:, :k].T @ basis  # [k, P]
    return values, jax.vmap(unravel)(vectors)


def spectral_density(matvec: MatVec, params_like: PyTree, key: jax.Array, *,
                     num_probes: int, num_iters: int, grid: jax.Array | int = 200,
                     sigma: float = 0.01) -> tuple[jax.Array, jax.Array]:
    """Eigenvalue density by stochastic Lanczos quadrature (Ubaru, Chen & Saad, 2017;
    Ghorbani, Krishnan & Xiao, 2019).

    Per probe v (normalized Rademacher), m-step Lanczos gives T; its eigenvalues are the
    Gauss quadrature nodes and the squared first components of its eigenvectors the
    weights (they sum to 1), so ``sum_l w_l g(theta_l) ~ v^T g(A) v ~ tr(g(A)) / P``. Each
    node is smoothed by a Gaussian of width ``sigma`` and the probes are averaged (run
    one after another with ``lax.map``: one ``[m, P]`` basis in memory at a time).

    Args:
      matvec, params_like: the symmetric operator, as in :func:`lanczos`.
      key: PRNG key. num_probes: number of probe vectors (>= 1).
      num_iters: Lanczos steps per probe, ``1 <= m <= P``.
      grid: evaluation points ``[G]``, or an int G for a uniform grid spanning all nodes
        +- 5 sigma.
      sigma: Gaussian width, in eigenvalue units (> 0).

    Returns:
      ``(grid [G], density [G])``; the density integrates to ~1 when the grid covers the
      spectrum +- a few sigma.
    """
    _check_positive("num_probes", num_probes)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}.")
    flat_matvec, _, size, dtype = _flat_operator(matvec, params_like)
    _check_positive("num_iters", num_iters, size, " (the number of parameters P)")

    def quadrature(probe_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        start = _unit_rademacher(probe_key, size, dtype)
        alphas, betas, _ = _lanczos_flat(flat_matvec, start, num_iters)
        nodes, vectors = jnp.linalg.eigh(tridiagonal(alphas, betas))
        return nodes, vectors[0] ** 2

    nodes, weights = jax.lax.map(quadrature, jax.random.split(key, num_probes))  # [n, m]
    if isinstance(grid, int):
        _check_positive("grid", grid)
        grid = jnp.linspace(nodes.min() - 5 * sigma, nodes.max() + 5 * sigma, grid)
    grid = jnp.asarray(grid, dtype)
    if grid.ndim != 1:
        raise ValueError(f"grid must be 1-D points [G] or an int, got shape {grid.shape}.")
    gaussians = jnp.exp(-0.5 * ((grid[:, None, None] - nodes) / sigma) ** 2)
    gaussians = gaussians / (sigma * jnp.sqrt(2 * jnp.pi))
    density = jnp.sum(gaussians * weights, axis=-1).mean(axis=-1)  # [G]
    return grid, density
