"""Per-example gradients: one gradient per training example instead of their mean.

A minibatch gradient is the mean of per-example gradients; keeping them apart is what
per-example clipping in differentially private SGD needs (DP-SGD, Abadi et al., 2016), and
what gradient-noise / gradient-diversity statistics are computed from. Goodfellow (2015,
"Efficient per-example gradient computations") showed these can be had for about the
cost of one backward pass; in JAX the generic way is ``vmap(grad(loss))`` over examples,
which batches every example's backward pass into one program (Frostig et al., 2018).

Convention: ``loss_fn(params, batch, *args) -> scalar`` is a *mean* loss over a batch of
examples (a dict of arrays sharing a leading ``[batch]`` axis). Every example is presented
to ``loss_fn`` as a batch of size 1, so losses written for batches (jaxdl objectives,
models that flatten ``x.shape[0]``) work unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any
LossFn = Callable[..., jax.Array]


def batch_size_of(batch: PyTree) -> int:
    """The shared leading dimension of every leaf of ``batch``; ValueError otherwise."""
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("batch: expected a pytree (e.g. a dict) of arrays, got no arrays.")
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) >= 1 else None for leaf in leaves}
    if None in sizes:
        raise ValueError("batch: every array needs a leading [batch] axis; got a scalar leaf.")
    if len(sizes) != 1:
        raise ValueError(
            f"batch: expected one shared leading [batch] dimension, got sizes {sorted(sizes)}."
        )
    return sizes.pop()


def _as_singleton_batch(example: PyTree) -> PyTree:
    """One example (leaves without the batch axis) -> a batch of size 1."""
    return jax.tree.map(lambda a: jnp.expand_dims(a, 0), example)


def _single_example_grad(loss_fn: LossFn, params: PyTree, example: PyTree, *args) -> PyTree:
    return jax.grad(loss_fn)(params, _as_singleton_batch(example), *args)


def per_example_grads(loss_fn: LossFn, params: PyTree, batch: PyTree, *args) -> PyTree:
    """Gradient of ``loss_fn`` for each example separately, vectorised with ``jax.vmap``.

    Args:
      loss_fn: ``(params, batch, *args) -> scalar`` mean loss over ``batch``.
      params: pytree of arrays.
      batch: pytree of arrays ``[batch, ...]`` sharing the leading axis.
      *args: passed unchanged to ``loss_fn`` (e.g. the model state); not batched.

    Returns:
      pytree like ``params`` with a leading ``[batch]`` axis on every leaf: entry ``i`` is
      ``grad(loss_fn)(params, batch[i:i+1], *args)``. Their mean over the batch axis is the
      minibatch gradient.
    """
    batch_size_of(batch)
    return jax.vmap(lambda example: _single_example_grad(loss_fn, params, example, *args))(
        batch
    )


def _squared_norm(tree: PyTree) -> jax.Array:
    # Accumulate in float32 at least so low-precision gradients do not overflow the sum.
    return sum(
        jnp.sum(jnp.square(leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))))
        for leaf in jax.tree.leaves(tree)
    )


def per_example_grad_norms(
    loss_fn: LossFn, params: PyTree, batch: PyTree, *args, chunk_size: int | None = None
) -> jax.Array:
    """L2 norm (over all leaves together) of each example's gradient.

    Each example's gradient is reduced to its norm inside the mapped function, so only
    ``[batch]`` norms leave it. With ``chunk_size`` the examples are processed
    ``chunk_size`` at a time (``jax.lax.map`` with ``batch_size``), which bounds the
    temporary per-example gradients to ``chunk_size`` copies of ``params`` instead of
    ``batch`` copies -- the memory that DP-SGD clipping of large batches is bound by.

    Args:
      loss_fn, params, batch, *args: as for :func:`per_example_grads`.
      chunk_size: examples per vectorised chunk; ``None`` vectorises the whole batch.

    Returns:
      ``[batch]`` float array of gradient norms.
    """
    n = batch_size_of(batch)
    if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size={chunk_size!r}: expected a positive int or None.")

    def norm_of_one(example: PyTree) -> jax.Array:
        return jnp.sqrt(_squared_norm(_single_example_grad(loss_fn, params, example, *args)))

    if chunk_size is None or chunk_size >= n:
        return jax.vmap(norm_of_one)(batch)
    return jax.lax.map(norm_of_one, batch, batch_size=chunk_size)


@functools.lru_cache(maxsize=32)
def _jitted_grad(loss_fn: LossFn) -> Callable[..., PyTree]:
    # Cached per loss function, so repeated reference runs (benchmarks) compile once.
    return jax.jit(jax.grad(loss_fn))


def per_example_grads_loop(loss_fn: LossFn, params: PyTree, batch: PyTree, *args) -> PyTree:
    """Reference implementation: a Python loop over examples of a jitted one-example grad.

    Same contract and result as :func:`per_example_grads`; one dispatch per example, so
    it is the slow baseline that the vectorised version is tested and benchmarked against.
    Not jit-able itself (it loops in Python over concrete examples).
    """
    n = batch_size_of(batch)
    grad_one = _jitted_grad(loss_fn)
    grads = [
        grad_one(params, jax.tree.map(lambda a, i=i: a[i : i + 1], batch), *args)
        for i in range(n)
    ]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *grads)


def tree_norms(per_example: PyTree) -> jax.Array:
    """``[batch]`` L2 norms of a per-example gradient pytree (leading ``[batch]`` axis)."""
    leaves = jax.tree.leaves(per_example)
    if not leaves:
        raise ValueError("per_example: expected a pytree of arrays, got no arrays.")
    return jnp.sqrt(
        sum(
            jnp.sum(jnp.square(leaf.reshape(leaf.shape[0], -1).astype(jnp.float32)), axis=1)
            for leaf in leaves
        )
    )
