"""Mixed-precision policies and dynamic loss scaling (Micikevicius et al., 2018).

A :class:`Policy` keeps the *master* parameters in float32 and casts them, together with the
floating inputs of the batch, to a low-precision *compute* dtype at the boundary of the loss
function. The cast is differentiable, so gradients flow back into float32 leaves: the
optimizer, its state and the parameter update never leave float32. The loss itself is
returned in float32; the models already accumulate where precision matters in float32
(matmuls with ``preferred_element_type=float32``, softmax on float32 logits, layer-norm
statistics promoted to float32 by flax).

Policies: ``f32`` (everything float32), ``bf16`` (bfloat16 compute: same exponent range as
float32, so no loss scaling is needed), ``f16`` (float16 compute with dynamic loss scaling:
float16 has 5 exponent bits, small gradients underflow to zero unless the loss is scaled up).

Dynamic loss scaling is :func:`dynamic_loss_scale`, an optax ``GradientTransformation``
*wrapper* around the whole optimizer. The train step multiplies the loss by the current
scale (read with :func:`loss_scale_of`); ``update`` divides the gradients by it, and if any
gradient is not finite it returns zero updates and leaves the wrapped optimizer's state
unchanged (a skipped step), halving the scale; after ``growth_interval`` finite steps in a
row it doubles the scale. Why a wrapper and not one more link of ``optax.chain``: a skipped
step must also freeze the state of every later transformation (Adam's moments and count,
schedules), which only a transformation that owns the inner state can do (the same reason
``optax.MultiSteps`` and ``optax.apply_if_finite`` are wrappers). The scale lives in the
optimizer state, so it is checkpointed and sharded with it for free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdl.registry import ConfigError

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Policy:
    """Dtypes of one mixed-precision policy.

    Attributes:
      name: ``f32``, ``bf16`` or ``f16``.
      param_dtype: dtype of the master parameters and optimizer state (float32).
      compute_dtype: dtype parameters and floating inputs are cast to inside the loss.
      output_dtype: dtype of the loss and metrics (float32).
      loss_scaling: whether the optimizer must be wrapped in :func:`dynamic_loss_scale`.
    """

    name: str
    param_dtype: Any
    compute_dtype: Any
    output_dtype: Any
    loss_scaling: bool


POLICIES = {
    "f32": Policy("f32", jnp.float32, jnp.float32, jnp.float32, False),
    "bf16": Policy("bf16", jnp.float32, jnp.bfloat16, jnp.float32, False),
    "f16": Policy("f16", jnp.float32, jnp.float16, jnp.float32, True),
}


def get_policy(name: str | Policy) -> Policy:
    """The policy called ``name``; ConfigError naming ``precision.policy`` otherwise."""
    if isinstance(name, Policy):
        return name
    if name not in POLICIES:
        raise ConfigError(f"precision.policy={name!r}: expected one of {list(POLICIES)}.")
    return POLICIES[name]


def cast_floating(tree: PyTree, dtype: Any) -> PyTree:
    """Cast every floating-point leaf of ``tree`` to ``dtype``; integer leaves untouched."""

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def policy_loss(loss_fn: Callable[..., Any], policy: str | Policy) -> Callable[..., Any]:
    """Wrap ``loss_fn(params, model_state, batch, rng) -> (loss, (metrics, model_state))``.

    Parameters and the floating leaves of the batch are cast to ``policy.compute_dtype``;
    the loss and metrics come back in ``policy.output_dtype`` and the new model state (e.g.
    batch-norm running statistics) in the dtypes of the old one, so it stays float32.
    """
    policy = get_policy(policy)
    if policy.compute_dtype == jnp.float32:
        return loss_fn

    def wrapped(params, model_state, batch, rng):
        loss, (metrics, new_state) = loss_fn(cast_floating(params, policy.compute_dtype),
                                             model_state,
                                             cast_floating(batch, policy.compute_dtype), rng)
        new_state = jax.tree.map(lambda new, old: new.astype(jnp.asarray(old).dtype),
                                 new_state, model_state)
        return (loss.astype(policy.output_dtype),
                (cast_floating(metrics, policy.output_dtype), new_state))

    return wrapped


class LossScaleState(NamedTuple):
    """State of :func:`dynamic_loss_scale`.

    ``scale``: float32 scalar the loss is multiplied by; ``good_steps``: int32 count of
    finite steps since the last change of scale; ``finite``: bool, whether the last update
    was applied; ``inner_state``: the wrapped optimizer's state.
    """

    scale: jax.Array
    good_steps: jax.Array
    finite: jax.Array
    inner_state: Any


def all_finite(tree: PyTree) -> jax.Array:
    """A bool scalar: every element of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def dynamic_loss_scale(inner: optax.GradientTransformation, *, init_scale: float = 2.0**15,
                       growth_interval: int = 2000, growth_factor: float = 2.0,
                       backoff_factor: float = 0.5,
                       min_scale: float = 1.0) -> optax.GradientTransformationExtraArgs:
    """Wrap ``inner`` so it receives unscaled gradients and skips non-finite steps.

    ``update(scaled_grads, state, params)`` expects the gradients of ``scale * loss``
    (``scale = state.scale``, see :func:`scaled_value_and_grad`). Non-finite: zero
    updates, ``inner_state`` unchanged, ``scale *= backoff_factor`` (not below
    ``min_scale``), counter reset. Finite: ``inner``'s update; after ``growth_interval``
    finite steps in a row ``scale *= growth_factor``.
    """
    for field, value, low in (("init_scale", init_scale, 1.0), ("growth_factor",
                              growth_factor, 1.0), ("min_scale", min_scale, 0.0)):
        if not value >= low:
            raise ConfigError(f"precision.{field}={value!r}: expected a number >= {low}.")
    if not 0.0 < backoff_factor < 1.0:
        raise ConfigError(f"precision.backoff_factor={backoff_factor!r}: expected 0 < value < 1.")
    if not isinstance(growth_interval, int) or growth_interval < 1:
        raise ConfigError(f"precision.growth_interval={growth_interval!r}: expected an "
                          "integer >= 1.")
    inner = optax.with_extra_args_support(inner)

    def init(params):
        return LossScaleState(jnp.asarray(init_scale, jnp.float32), jnp.zeros((), jnp.int32),
                              jnp.asarray(True), inner.init(params))

    def update(updates, state, params=None, **extra_args):
        grads = jax.tree.map(lambda g: g / state.scale.astype(g.dtype), updates)
        finite = all_finite(grads)
        new_updates, new_inner = inner.update(grads, state.inner_state, params, **extra_args)
        new_updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)),
                                   new_updates)
        new_inner = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_inner,
                                 state.inner_state)
        good = jnp.where(finite, state.good_steps + 1, 0)
        grow = good >= growth_interval
        scale = jnp.where(finite, jnp.where(grow, state.scale * growth_factor, state.scale),
                          jnp.maximum(state.scale * backoff_factor, min_scale))
        good = jnp.where(grow, 0, good)
        return new_updates, LossScaleState(scale.astype(jnp.float32), good.astype(jnp.int32),
                                           finite, new_inner)

    return optax.GradientTransformationExtraArgs(init, update)


def _is_scale_state(x: Any) -> bool:
    return isinstance(x, LossScaleState)


def loss_scale_state(opt_state: PyTree) -> LossScaleState | None:
    """The outermost :class:`LossScaleState` inside ``opt_state``, or None."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_scale_state)
             if _is_scale_state(x)]
    return found[0] if found else None


def loss_scale_of(opt_state: PyTree) -> jax.Array | None:
    """The current loss scale held in ``opt_state`` (None: no loss scaling)."""
    state = loss_scale_state(opt_state)
    return None if state is None else state.scale


def scaled_value_and_grad(loss_fn: Callable[..., Any], scale: jax.Array | None):
    """``jax.value_and_grad(loss_fn, has_aux=True)`` of ``scale * loss``.

    The returned loss is the *unscaled* one; the gradients are scaled (the
    :func:`dynamic_loss_scale` wrapper divides them). ``scale=None``: plain gradients.
    """
    if scale is None:
        return jax.value_and_grad(loss_fn, has_aux=True)

    def scaled(*args):
        loss, aux = loss_fn(*args)
        return loss * scale.astype(loss.dtype), (loss, aux)

    def value_and_grad(*args):
        (_, (loss, aux)), grads = jax.value_and_grad(scaled, has_aux=True)(*args)
        return (loss, aux), grads

    return value_and_grad


def make_optimizer(tx: optax.GradientTransformation, policy: str | Policy,
                   **scaling: Any) -> optax.GradientTransformation:
    """``tx`` wrapped in :func:`dynamic_loss_scale` when the policy needs it (``f16``)."""
    return dynamic_loss_scale(tx, **scaling) if get_policy(policy).loss_scaling else tx


def precision_metrics(opt_state: PyTree) -> dict[str, jax.Array]:
    """``loss_scale`` and ``update_skipped`` (0/1) for logging; empty without scaling."""
    state = loss_scale_state(opt_state)
    if state is None:
        return {}
    return {"loss_scale": state.scale, "update_skipped": 1.0 - state.finite.astype(jnp.float32)}


def policy_train_step(loss_fn: Callable[..., Any], tx: optax.GradientTransformation,
                      policy: str | Policy, *, num_microbatches: int = 1):
    """The pure step ``(params, model_state, opt_state, batch, rng) -> (params, model_state,
    opt_state, metrics)`` under ``policy`` (uncompiled; wrap it in ``jax.jit``).

    ``tx`` must already be :func:`make_optimizer`'s (wrapped for ``f16``). The same three
    lines are what ``jaxdl.train.step.train_step_fn`` needs to support precision policies.
    """
    from jaxdl.parallel.accumulate import accumulated_value_and_grad

    policy_fn = policy_loss(loss_fn, policy)

    def step(params, model_state, opt_state, batch, rng):
        grad_fn = scaled_value_and_grad(policy_fn, loss_scale_of(opt_state))
        grad_fn = accumulated_value_and_grad(policy_fn, num_microbatches,
                                             value_and_grad=grad_fn)
        (loss, (metrics, model_state)), grads = grad_fn(params, model_state, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {**metrics, "loss": loss, **precision_metrics(opt_state)}
        return params, model_state, opt_state, metrics

    return step
