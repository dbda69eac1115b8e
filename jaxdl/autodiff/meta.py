"""Gradients through an unrolled inner optimisation (hypergradients).

Training for ``K`` steps of SGD is itself a differentiable function of the learning rate:
``w_K(lr) = step(... step(w_0, lr) ..., lr)``. Differentiating an outer (validation) loss
of ``w_K`` with respect to ``log lr`` by reverse mode through the unrolled loop gives the
exact hypergradient (Domke, 2012; Maclaurin et al., 2015, "Gradient-based hyperparameter
optimization through reversible learning"); the same construction, with a learned update
rule in place of SGD, is how Andrychowicz et al. (2016, "Learning to learn by gradient
descent by gradient descent") train optimisers. Descending on that hypergradient is
hypergradient descent (Baydin et al., 2018).

The inner loop is a ``jax.lax.scan``, so it compiles once whatever ``num_steps`` is, and
reverse mode stores one set of parameters per step (``remat=True`` recomputes each step's
forward pass in the backward sweep instead of storing its activations). Maclaurin et al.
avoid even that storage by reversing momentum SGD exactly; plain SGD is not reversible,
so storing the trajectory is the honest choice here.

The learning rate is parameterised as ``lr = exp(log_lr)``: it stays positive and the
hypergradient is scale-free (a relative change of ``lr``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]


def _leading_steps(batches: PyTree, num_steps: int | None) -> int:
    """``num_steps`` checked against (or read from) the leading axis of ``batches``."""
    leaves = jax.tree.leaves(batches)
    if num_steps is not None and not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"num_steps={num_steps!r}: expected a positive int.")
    if not leaves:
        if num_steps is None:
            raise ValueError("num_steps: required when batches holds no arrays (e.g. None).")
        return num_steps
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"batches: expected one shared leading [num_steps] axis on every array, got "
            f"leading sizes {sorted(s for s in sizes if s is not None)}"
            f"{' and a scalar' if None in sizes else ''}."
        )
    (size,) = sizes
    if num_steps is not None and size != num_steps:
        raise ValueError(f"batches: leading axis is {size}, expected num_steps={num_steps}.")
    return size


def unrolled_sgd(
    loss_fn: LossFn,
    params: PyTree,
    batches: PyTree,
    log_lr: jax.Array | float,
    num_steps: int | None = None,
    *,
    remat: bool = False,
) -> PyTree:
    """``num_steps`` steps of plain SGD, ``w <- w - exp(log_lr) * grad loss_fn(w, batch_t)``.

    Differentiable in ``params`` and ``log_lr`` (reverse mode goes back through the scan).

    Args:
      loss_fn: ``(params, batch) -> scalar`` inner (training) loss.
      params: pytree of float arrays, the starting point ``w_0``.
      batches: pytree with a leading ``[num_steps]`` axis (step ``t`` uses ``batches[t]``),
        or ``None`` for a full-batch loss (then ``loss_fn`` gets ``None``).
      log_lr: scalar, natural log of the learning rate.
      num_steps: number of inner steps; read from ``batches`` when omitted.
      remat: recompute each step's forward pass in the backward sweep (less memory).

    Returns:
      pytree like ``params``: ``w_{num_steps}``.
    """
    num_steps = _leading_steps(batches, num_steps)
    lr = jnp.exp(log_lr)

    def step(current: PyTree, batch: PyTree) -> tuple[PyTree, None]:
        grads = jax.grad(loss_fn)(current, batch)
        new = jax.tree.map(lambda w, g: w - (lr * g).astype(w.dtype), current, grads)
        return new, None

    if remat:
        step = jax.checkpoint(step)
    final, _ = jax.lax.scan(step, params, batches, length=num_steps)
    return final


def meta_gradient(
    inner_loss_fn: LossFn,
    outer_loss_fn: LossFn,
    params: PyTree,
    inner_batches: PyTree,
    outer_batch: PyTree,
    log_lr: jax.Array | float,
    *,
    num_steps: int | None = None,
    remat: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Outer loss after an unrolled inner SGD run, and its derivative w.r.t. ``log_lr``.

    ``outer(log_lr) = outer_loss_fn(unrolled_sgd(inner_loss_fn, params, inner_batches,
    log_lr), outer_batch)``; the derivative is exact reverse mode through every inner step
    (Maclaurin et al., 2015).

    Args:
      inner_loss_fn: ``(params, batch) -> scalar`` training loss.
      outer_loss_fn: ``(params, batch) -> scalar`` validation loss.
      params: pytree, the inner run's starting point.
      inner_batches: pytree with leading ``[num_steps]`` axis (or ``None``, see
        :func:`unrolled_sgd`).
      outer_batch: pytree passed to ``outer_loss_fn``.
      log_lr: scalar.

    Returns:
      ``(outer_loss: [], d outer_loss / d log_lr: [])``.
    """
    def outer(log_lr_value: jax.Array) -> jax.Array:
        final = unrolled_sgd(
            inner_loss_fn, params, inner_batches, log_lr_value, num_steps, remat=remat
        )
        return outer_loss_fn(final, outer_batch)

    return jax.value_and_grad(outer)(jnp.asarray(log_lr, dtype=_float_dtype(params)))


def _float_dtype(params: PyTree) -> jnp.dtype:
    """The widest float dtype among ``params`` (so float64 checks stay float64)."""
    dtypes = [leaf.dtype for leaf in jax.tree.leaves(params)
              if jnp.issubdtype(leaf.dtype, jnp.floating)]
    return jnp.result_type(*dtypes) if dtypes else jnp.float32


class LearningRateHistory(NamedTuple):
    """Hypergradient descent trajectory.

    Attributes:
      log_lr: ``[meta_steps]`` the log learning rate used at each meta-step.
      outer_loss: ``[meta_steps]`` the outer loss obtained with it.
      final_log_lr: ``[]`` the log learning rate after the last meta-update.
    """

    log_lr: jax.Array
    outer_loss: jax.Array
    final_log_lr: jax.Array


def learn_learning_rate(
    inner_loss_fn: LossFn,
    outer_loss_fn: LossFn,
    params: PyTree,
    inner_batches: PyTree,
    outer_batch: PyTree,
    log_lr: jax.Array | float,
    meta_steps: int,
    meta_lr: float,
    *,
    num_steps: int | None = None,
    remat: bool = False,
) -> LearningRateHistory:
    """Hypergradient descent on ``log_lr`` (Baydin et al., 2018; Maclaurin et al., 2015).

    Each meta-step restarts the inner SGD run from the same ``params``, measures the outer
    loss and its hypergradient with :func:`meta_gradient`, and takes
    ``log_lr <- log_lr - meta_lr * d outer / d log_lr``. The meta-steps are a
    ``lax.scan``, so the whole search is one compiled program.

    Args:
      inner_loss_fn, outer_loss_fn, params, inner_batches, outer_batch: as for
        :func:`meta_gradient`.
      log_lr: scalar, the initial log learning rate.
      meta_steps: number of hypergradient steps (a positive int).
      meta_lr: step size on ``log_lr`` (> 0).

    Returns:
      :class:`LearningRateHistory` with ``[meta_steps]`` trajectories.
    """
    if not (isinstance(meta_steps, int) and meta_steps >= 1):
        raise ValueError(f"meta_steps={meta_steps!r}: expected a positive int.")
    if isinstance(meta_lr, (int, float)) and not meta_lr > 0:
        raise ValueError(f"meta_lr={meta_lr!r}: expected a positive number.")
    _leading_steps(inner_batches, num_steps)  # fail early with a clear message

    def meta_step(current: jax.Array, _) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        loss, hypergrad = meta_gradient(
            inner_loss_fn, outer_loss_fn, params, inner_batches, outer_batch, current,
            num_steps=num_steps, remat=remat,
        )
        return (current - meta_lr * hypergrad).astype(current.dtype), (current, loss)

    start = jnp.asarray(log_lr, dtype=_float_dtype(params))
    final, (log_lrs, losses) = jax.lax.scan(meta_step, start, None, length=meta_steps)
    return LearningRateHistory(log_lr=log_lrs, outer_loss=losses, final_log_lr=final)
