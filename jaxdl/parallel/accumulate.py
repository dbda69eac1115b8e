"""Gradient accumulation over microbatches inside one compiled step.

:func:`accumulated_value_and_grad` splits a batch ``[batch, ...]`` into ``k`` microbatches
``[k, batch // k, ...]`` and runs the loss and its gradient on them one after the other with
``jax.lax.scan``, summing the gradients in float32. Peak activation memory is that of one
microbatch; the result is the mean over microbatches, which for a mean-reduced loss over
equal-sized microbatches *is* the large-batch loss and gradient (up to float rounding).

Two kinds of accumulation, both useful:

* in-step (this module): one optimizer update per call, the whole batch on the device at
  once but processed ``batch // k`` examples at a time. Per-step overhead (dispatch,
  the optimizer update, and in data parallelism the gradient all-reduce) is paid once per
  large batch.
* across steps (the trainer's ``accumulate_steps``, ``optax.MultiSteps``): every call is a
  full train step on one small batch and the optimizer applies the averaged update every
  ``k`` calls. The host feeds small batches; the data iterator and the step counter see
  ``k`` times more steps; the reduction of gradients runs every call.

``unroll=True`` writes the ``k`` microbatch passes out as separate, independent parts of the
program instead of a ``scan`` (microbatch ``i`` takes examples ``i, i + k, i + 2k, ...``, so
under data parallelism every microbatch stays on the devices that hold its examples). There
is no memory saving then; what it buys is speed on CPU: XLA:CPU runs independent operations
concurrently on its thread pool and each pass works on a smaller, cache-friendlier batch.
Measured on 2 cores: ``python -m experiments.bench.gpt`` (batch 16), 4 unrolled
microbatches 0.90x the one-pass step time (811 vs 905 ms); in scratch same-process A/Bs
0.89-0.91x (0.95x pinned to one core, so part is cache, part concurrency) and 0.92x with 8;
``python -m experiments.bench.cnn``, the small CNN 0.98x (55.6 vs 56.8 ms). Since
:mod:`jaxdl.host_memory` removed the per-step page faults the gain is smaller: GPT 0.96-0.97x
(660 vs 680 ms, 661 vs 691 ms), small CNN 0.98-1.00x (42.2 vs 43.1 ms, 37.7 vs 37.6 ms). On GPUs
and TPUs one large pass is usually faster. The model state is threaded through the passes in
order, as below; for BatchNorm in training (normalizing with batch statistics) that chains
only the small running-average updates, not the passes themselves.

Model state (e.g. batch-norm running statistics) is threaded through the microbatches in
order, as ``k`` sequential small steps would; batch statistics of BatchNorm are those of a
microbatch, so BatchNorm models are *not* equal to one large batch. Each microbatch gets its
own PRNG key ``fold_in(rng, i)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def split_microbatches(batch: PyTree, num_microbatches: int) -> PyTree:
    """Reshape every leaf ``[batch, ...]`` to ``[num_microbatches, batch // k, ...]``.

    Raises ValueError naming ``num_microbatches`` if a leading dimension is not divisible.
    """
    if not isinstance(num_microbatches, int) or num_microbatches < 1:
        raise ValueError(f"num_microbatches={num_microbatches!r}: expected an integer >= 1.")

    def split(path, x):
        n = x.shape[0] if x.ndim else None
        if n is None or n % num_microbatches:
            raise ValueError(
                f"num_microbatches={num_microbatches}: batch leaf {jax.tree_util.keystr(path)} "
                f"has leading dimension {n}; expected a multiple of {num_microbatches}.")
        return x.reshape(num_microbatches, n // num_microbatches, *x.shape[1:])

    return jax.tree_util.tree_map_with_path(split, batch)


def strided_microbatches(batch: PyTree, num_microbatches: int) -> list[PyTree]:
    """``k`` microbatches of every leaf ``[batch, ...]``: microbatch ``i`` holds examples
    ``i, i + k, i + 2k, ...`` (``[batch // k, ...]``), shard-local when each device's slice of
    the batch is a multiple of ``k``. Same errors as :func:`split_microbatches`."""
    split_microbatches(batch, num_microbatches)  # validation only (a reshape is free)
    k = num_microbatches
    return [jax.tree.map(lambda x, i=i: x.reshape(x.shape[0] // k, k, *x.shape[1:])[:, i],
                         batch) for i in range(k)]


def accumulated_value_and_grad(loss_fn: Callable[..., Any], num_microbatches: int,
                               *, value_and_grad: Callable[..., Any] | None = None,
                               unroll: bool = False):
    """``jax.value_and_grad(loss_fn, has_aux=True)`` computed over ``num_microbatches``.

    Args:
      loss_fn: ``(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))``
        with a loss that is a mean over the batch.
      num_microbatches: ``k``; every batch leaf's leading dimension must be divisible.
      value_and_grad: the gradient function to call per microbatch (default
        ``jax.value_and_grad(loss_fn, has_aux=True)``); e.g.
        :func:`jaxdl.parallel.precision.scaled_value_and_grad` for loss scaling.
      unroll: independent unrolled passes over strided microbatches instead of a ``scan``
        over contiguous ones (module doc: faster on CPU, no memory saving).

    Returns:
      ``f(params, model_state, batch, rng) -> ((loss, (metrics, model_state)), grads)``:
      loss, metrics and grads are means over the microbatches (grads in the dtype of the
      parameters, accumulated in float32); ``model_state`` is the state after the last one.
    """
    grad_fn = value_and_grad or jax.value_and_grad(loss_fn, has_aux=True)
    if num_microbatches == 1:
        return grad_fn

    if unroll:
        return _unrolled(grad_fn, num_microbatches)

    def accumulated(params, model_state, batch, rng):
        micro = split_microbatches(batch, num_microbatches)
        first = jax.tree.map(lambda x: x[0], micro)
        (loss_shape, (metrics_shape, _)), _ = jax.eval_shape(
            grad_fn, params, model_state, first, rng)
        zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), tree)

        def body(carry, xs):
            state, loss_sum, metrics_sum, grad_sum = carry
            index, piece = xs
            key = None if rng is None else jax.random.fold_in(rng, index)
            (loss, (metrics, state)), grads = grad_fn(params, state, piece, key)
            add = lambda total, x: total + x.astype(jnp.float32)
            return (state, loss_sum + loss.astype(jnp.float32),
                    jax.tree.map(add, metrics_sum, metrics),
                    jax.tree.map(add, grad_sum, grads)), None

        init = (model_state, zeros(loss_shape), zeros(metrics_shape), zeros(params))
        (state, loss, metrics, grads), _ = jax.lax.scan(
            body, init, (jnp.arange(num_microbatches), micro))
        mean = lambda total, like: (total / num_microbatches).astype(like.dtype)
        return ((mean(loss, loss_shape), (jax.tree.map(mean, metrics, metrics_shape), state)),
                jax.tree.map(mean, grads, params))

    return accumulated


def _unrolled(grad_fn: Callable[..., Any], k: int):
    """The ``unroll=True`` form of :func:`accumulated_value_and_grad`."""

    def accumulated(params, model_state, batch, rng):
        f32 = lambda x: x.astype(jnp.float32)  # noqa: E731
        state, totals, like = model_state, None, None
        for index, piece in enumerate(strided_microbatches(batch, k)):
            key = None if rng is None else jax.random.fold_in(rng, index)
            (loss, (metrics, state)), grads = grad_fn(params, state, piece, key)
            parts = jax.tree.map(f32, (loss, metrics, grads))
            totals = parts if totals is None else jax.tree.map(jnp.add, totals, parts)
            like = (loss, metrics, grads)
        loss, metrics, grads = jax.tree.map(lambda t, x: (t / k).astype(x.dtype), totals, like)
        return (loss, (metrics, state)), grads

    return accumulated
