"""Hutchinson estimators of the trace and diagonal of a matrix given only as ``matvec``.

With Rademacher probes ``z`` (independent +-1 entries, ``E[z z^T] = I``):

* trace: ``E[z^T A z] = tr(A)`` (Hutchinson, 1990), per-probe variance
  ``2 * sum_{j != k} A_jk^2`` -- the minimum over i.i.d. probe distributions;
* diagonal: ``E[z * (A z)] = diag(A)`` (Bekas, Kokiopoulou & Saad, 2007), per-entry
  variance ``sum_{k != j} A_jk^2``.

Both are exact for a diagonal A. ``matvec(v) -> pytree like v`` is typically a
Hessian/Gauss-Newton/Fisher-vector product from :mod:`jaxdl.autodiff.products`.

Memory trade-off (``batch_size``): ``None`` runs the probes one after another
(``lax.map``/``lax.scan``), so only one probe and one matvec are alive at a time -- the
memory of a single matvec. An int ``b`` vectorizes ``b`` probes per step with ``vmap``:
faster on an accelerator, but ``b`` matvecs' intermediates (activations of ``b``
forward/backward passes) are alive at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any
MatVec = Callable[[PyTree], PyTree]


def rademacher_like(key: jax.Array, params_like: PyTree) -> PyTree:
    """Independent +-1 entries with the structure, shapes and dtypes of ``params_like``.

    One random draw over the flattened vector (not one per leaf), so a model with many
    leaves still compiles a single random-number kernel per probe.
    """
    flat, unravel = ravel_pytree(params_like)
    signs = jax.random.rademacher(key, flat.shape, dtype=jnp.int32).astype(flat.dtype)
    return unravel(signs)


def _check_counts(num_samples: int, batch_size: int | None, minimum: int) -> None:
    if not isinstance(num_samples, int) or num_samples < minimum:
        raise ValueError(f"num_samples must be an int >= {minimum}, got {num_samples!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None or a positive int, got {batch_size!r}.")


def _tree_dot(a: PyTree, b: PyTree) -> jax.Array:
    return sum(jax.tree.leaves(jax.tree.map(lambda x, y: jnp.sum(x * y), a, b)))


def hutchinson_trace(matvec: MatVec, params_like: PyTree, key: jax.Array, num_samples: int,
                     *, batch_size: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Estimate ``tr(A)`` with Rademacher probes (Hutchinson, 1990).

    Args:
      matvec: ``v -> A v`` over pytrees like ``params_like`` (A symmetric or not).
      params_like: pytree fixing the probe structure/shapes/dtypes (values unused).
      key: PRNG key. num_samples: number of probes (>= 2, for the error bar).
      batch_size: None (sequential probes, one matvec in memory) or probes per vmapped
        step (see the module docstring).

    Returns:
      ``(estimate, std_error)``, scalars: the mean of ``z^T A z`` over probes and its
      standard error ``std(ddof=1) / sqrt(num_samples)``.
    """
    _check_counts(num_samples, batch_size, minimum=2)

    def quadratic_form(k: jax.Array) -> jax.Array:
        z = rademacher_like(k, params_like)
        return _tree_dot(z, matvec(z))

    # Only scalars are kept per probe, so lax.map's stacked output is cheap.
    samples = jax.lax.map(quadratic_form, jax.random.split(key, num_samples),
                          batch_size=batch_size)
    std_error = jnp.std(samples, ddof=1) / jnp.sqrt(num_samples)
    return jnp.mean(samples), std_error


def hutchinson_diagonal(matvec: MatVec, params_like: PyTree, key: jax.Array,
                        num_samples: int, *, batch_size: int | None = None) -> PyTree:
    """Estimate ``diag(A)`` as the mean of ``z * (A z)`` (Bekas, Kokiopoulou & Saad, 2007).

    Args: as :func:`hutchinson_trace` (``num_samples >= 1``).

    Returns:
      pytree like ``params_like``: the estimated diagonal entries. The probes are summed in
      a ``lax.scan`` carry, so memory does not grow with ``num_samples``.
    """
    _check_counts(num_samples, batch_size, minimum=1)

    def product(k: jax.Array) -> PyTree:
        z = rademacher_like(k, params_like)
        return jax.tree.map(jnp.multiply, z, matvec(z))

    def summed(chunk_keys: jax.Array) -> PyTree:  # [b] keys -> sum of b products
        return jax.tree.map(lambda t: jnp.sum(t, axis=0), jax.vmap(product)(chunk_keys))

    keys = jax.random.split(key, num_samples)
    chunk = 1 if batch_size is None else min(batch_size, num_samples)
    num_chunks, remainder = divmod(num_samples, chunk)
    step = product if batch_size is None else summed
    shaped = keys[: num_chunks * chunk]
    if batch_size is not None:
        shaped = shaped.reshape(num_chunks, chunk, *keys.shape[1:])
    zeros = jax.tree.map(lambda leaf: jnp.zeros(jnp.shape(leaf), jnp.result_type(leaf)),
                         params_like)
    total, _ = jax.lax.scan(lambda acc, k: (jax.tree.map(jnp.add, acc, step(k)), None),
                            zeros, shaped)
    if remainder:
        total = jax.tree.map(jnp.add, total, summed(keys[num_chunks * chunk:]))
    return jax.tree.map(lambda t: t / num_samples, total)
