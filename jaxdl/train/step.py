"""Compiled train and eval steps for any objective and any optax transformation.

``make_train_step`` returns a :class:`CompiledStep`: ``(state, batch) -> (state, metrics)``
compiled once with ``jax.jit``, the state donated (updated in place) and, under a mesh,
explicit in/out shardings. Before the first call it checks the batch against the expected
shapes and dtypes so a mismatch is a clear ``ValueError``, not an XLA trace error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax

from jaxdl.monitor.instability import TraceCounter
from jaxdl.optim.curvature import curvature_requested, curvature_subsample
from jaxdl.optim.kfac import fisher_gram_fn, fisher_vector_fn, value_grad_and_curvature
from jaxdl.optim.kfac.estimator import subsample_batch
from jaxdl.parallel import precision as mixed_precision
from jaxdl.parallel.accumulate import accumulated_value_and_grad
from jaxdl.train.state import TrainState

Batch = Mapping[str, Any]
MICROBATCH_MODES = ("scan", "unroll")


def batch_spec(batch: Batch) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape, dtype)}`` of a batch, for comparing batches before compilation."""
    return {k: (tuple(np.shape(v)), np.result_type(v)) for k, v in batch.items()}


def check_batch(batch: Batch, expected: Mapping[str, tuple[tuple[int, ...], Any]]) -> None:
    """Raise ValueError naming the first key whose shape or dtype differs from ``expected``."""
    missing = sorted(set(expected) - set(batch))
    if missing:
        raise ValueError(f"batch is missing {missing}; expected keys {sorted(expected)}.")
    for key, (shape, dtype) in expected.items():
        got_shape, got_dtype = tuple(np.shape(batch[key])), np.result_type(batch[key])
        if got_shape != tuple(shape) or got_dtype != np.dtype(dtype):
            raise ValueError(
                f"batch[{key!r}] has shape {got_shape} and dtype {got_dtype}; expected shape "
                f"{tuple(shape)} and dtype {np.dtype(dtype)}."
            )


class CompiledStep:
    """A jitted step that validates its batch once, then dispatches with no extra work."""

    def __init__(self, jitted: Callable[..., Any], expected: Mapping[str, Any] | None):
        self.jitted = jitted
        self.expected = expected
        self._checked = expected is None

    def __call__(self, state: Any, batch: Batch) -> Any:
        if not self._checked:
            check_batch(batch, self.expected)
            self._checked = True
        return self.jitted(state, batch)

    def lower(self, state: Any, batch: Batch):
        """``jax.jit(...).lower`` for AOT compilation, cost and memory analysis."""
        return self.jitted.lower(state, batch)


def train_step_fn(loss_fn: Callable[..., Any], tx: optax.GradientTransformation, *,
                  grad_norm: bool = False, precision: str = "f32", microbatches: int = 1,
                  microbatch_mode: str = "scan"):
    """The pure, uncompiled step ``(TrainState, batch) -> (TrainState, metrics)``.

    ``loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))``.
    Metrics: the objective's, plus ``loss``, and ``grad_norm`` (global L2 norm) when asked:
    it is an extra pass over every gradient, measured at 5-12% of a memory-bound MLP step
    on CPU (``experiments.bench.overhead``), so it is a monitor switched on by config.

    ``precision``: a :mod:`jaxdl.parallel.precision` policy (``f32``, ``bf16``, ``f16``; for
    ``f16`` ``tx`` must be wrapped by ``precision.make_optimizer``, whose loss scale the step
    reads from the optimizer state and whose ``loss_scale``/``update_skipped`` it logs).
    ``microbatches``: gradients accumulated over this many slices of the batch with
    ``lax.scan`` inside the step (:mod:`jaxdl.parallel.accumulate`); ``microbatch_mode``
    ``"unroll"``: as independent unrolled passes over strided slices instead (faster on CPU,
    no memory saving). The defaults give the plain ``jax.value_and_grad`` step.
    """
    if microbatch_mode not in MICROBATCH_MODES:
        raise ValueError(f"microbatch_mode={microbatch_mode!r}: expected one of "
                         f"{MICROBATCH_MODES}.")
    policy_fn = mixed_precision.policy_loss(loss_fn, precision)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        if curvature_requested(state.opt_state):  # K-FAC: statistics from the same pass
            return curvature_step(policy_fn, tx, state, batch, grad_norm=grad_norm)
        grad_fn = mixed_precision.scaled_value_and_grad(
            policy_fn, mixed_precision.loss_scale_of(state.opt_state))
        grad_fn = accumulated_value_and_grad(policy_fn, microbatches, value_and_grad=grad_fn,
                                             unroll=microbatch_mode == "unroll")
        (loss, (metrics, model_state)), grads = grad_fn(
            state.params, state.model_state, batch, state.step_key()
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state, metrics = _apply(state, updates, opt_state, model_state, metrics, loss,
                                    grads, grad_norm)
        return new_state, {**metrics, **mixed_precision.precision_metrics(opt_state)}

    return step


def _apply(state: TrainState, updates: Any, opt_state: Any, model_state: Any,
           metrics: dict[str, jax.Array], loss: jax.Array, grads: Any,
           grad_norm: bool) -> tuple[TrainState, dict[str, jax.Array]]:
    """The end every step shares: apply the updates, advance the step, assemble metrics."""
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state
    )
    metrics = {**metrics, "loss": loss}
    if grad_norm:
        metrics["grad_norm"] = optax.global_norm(grads)
    return new_state, metrics


def curvature_step(loss_fn: Callable[..., Any], tx: optax.GradientTransformation,
                   state: TrainState, batch: Batch, *, grad_norm: bool = False):
    """The train step for optimizers that need curvature (K-FAC, second-order methods).

    One forward pass with the curvature hooks on, the gradient, and the Kronecker-factor
    statistics (:func:`jaxdl.optim.kfac.value_grad_and_curvature`), passed to the optimizer
    as ``update(..., curvature=stats, loss_fn=..., loss=..., fisher_gram=...)`` (``loss_fn``:
    the loss of this batch as a function of the parameters, for damping adaptation;
    ``fisher_gram``: exact Fisher Gram matrices of vectors, for the adaptive step size;
    ``fisher_vector``: exact Fisher-vector products, for second-order methods).
    """
    key = state.step_key()
    every = curvature_subsample(state.opt_state)
    (loss, (metrics, model_state)), grads, stats = value_grad_and_curvature(
        loss_fn, state.params, state.model_state, batch, key, jax.random.fold_in(key, 1),
        every)

    def batch_loss(params: Any) -> jax.Array:
        return loss_fn(params, state.model_state, batch, key)[0]

    pieces = (loss_fn, state.params, state.model_state, subsample_batch(batch, every), key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, curvature=stats,
                                   loss_fn=batch_loss, loss=loss,
                                   fisher_gram=fisher_gram_fn(*pieces),
                                   fisher_vector=fisher_vector_fn(*pieces))
    return _apply(state, updates, opt_state, model_state, metrics, loss, grads, grad_norm)


def make_train_step(
    loss_fn: Callable[..., Any],
    tx: optax.GradientTransformation,
    *,
    state_sharding: Any = None,
    batch_sharding: Any = None,
    metrics_sharding: Any = None,
    expected_batch: Mapping[str, Any] | None = None,
    donate: bool = True,
    grad_norm: bool = False,
    precision: str = "f32",
    microbatches: int = 1,
    microbatch_mode: str = "scan",
    compiler_options: Mapping[str, Any] | None = None,
) -> CompiledStep:
    """Compile the train step once.

    Args:
      loss_fn: see :func:`train_step_fn`.
      tx: any optax ``GradientTransformation`` (a chain, ours or optax's).
      state_sharding / batch_sharding / metrics_sharding: shardings (or pytree prefixes of
        them) for the TrainState, the batch and the metrics; None lets jit decide.
      expected_batch: ``{key: (shape, dtype)}`` checked on the first call.
      donate: donate the input state's buffers to the output state.
      grad_norm: also return the global gradient norm as ``metrics["grad_norm"]``.
      precision / microbatches / microbatch_mode: see :func:`train_step_fn`.
      compiler_options: XLA options for ``jax.jit`` (e.g. :func:`jaxdl.xla_cpu.compiler_options`).
    """
    # The counter warns if the step is ever traced again (a silent recompilation).
    counted = TraceCounter(train_step_fn(loss_fn, tx, grad_norm=grad_norm, precision=precision,
                                          microbatches=microbatches,
                                          microbatch_mode=microbatch_mode), "train_step")
    jitted = jax.jit(
        counted,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, metrics_sharding),
        donate_argnums=(0,) if donate else (),
        compiler_options=dict(compiler_options) if compiler_options else None,
    )
    return CompiledStep(jitted, expected_batch)


def make_eval_step(
    evaluate_fn: Callable[..., Any],
    *,
    state_sharding: Any = None,
    batch_sharding: Any = None,
    metrics_sharding: Any = None,
    expected_batch: Mapping[str, Any] | None = None,
    compiler_options: Mapping[str, Any] | None = None,
) -> CompiledStep:
    """Compile ``(TrainState, batch) -> {name: sum}`` from ``evaluate(params, state, batch)``
    (arguments as for :func:`make_train_step`)."""

    def step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
        return evaluate_fn(state.params, state.model_state, batch)

    jitted = jax.jit(
        step,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=metrics_sharding,
        compiler_options=dict(compiler_options) if compiler_options else None,
    )
    return CompiledStep(jitted, expected_batch)
