"""K-FAC as an optax ``GradientTransformation`` (Martens & Grosse, 2015).

For a dense layer with gradient ``V = [dW; db]`` (``[d_in + 1, d_out]``) the Fisher block is
approximated by ``A (x) G`` (:mod:`jaxdl.optim.kfac.estimator`), and the update is

    U = (A + pi sqrt(lam) I)^-1  V  (G + sqrt(lam) / pi I)^-1,
    pi = sqrt((tr A / dim A) / (tr G / dim G))          (factored Tikhonov damping)

Two ways to turn ``U`` into a step:

* fixed: a KL-based step-size cap (``lr^2 <V, U> <= kl_clip``; Ba, Grosse & Martens,
  2017), momentum ``v <- mu v + U`` and ``-lr v``;
* ``adaptive`` (Martens & Grosse, 2015, sec. 7): ``d = a (-U) + m d_prev`` with ``(a, m)``
  minimising the quadratic model of the loss built from the *exact* Fisher on the batch
  (two forward-mode products through the network, ``fisher_gram`` from the train step).

Parameters outside curvature layers are passed through unpreconditioned.

Everything lives in the state: factor EMAs (weight ``min(ema, 1 - 1/t)``), their damped
inverses, refreshed every ``inverse_every`` steps with the layers *staggered* (layer ``i``
at steps ``t = o_i mod inverse_every``) so each step inverts about
``layers / inverse_every`` factor pairs and step time stays flat, the damping ``lam`` and
its Levenberg-Marquardt adaptation (below), and the momentum. The statistics of the current
batch arrive as ``update(..., curvature=stats)``: the train step of
:mod:`jaxdl.train.step` passes them whenever the optimizer state holds a :class:`KFACState`,
so ``optax.chain(optax.clip_by_global_norm(1.0), kfac(...))``, ``optax.MultiSteps`` and
``optax.inject_hyperparams`` all work, under one compiled step.

Levenberg-Marquardt (More, 1978; Martens, 2010), with ``adapt_damping``: every
``damping_every`` steps, using ``loss_fn`` (the loss of the current batch as a function of the
parameters), the reduction ratio ``rho = (L(w + d) - L(w)) / M(d)`` of the proposed step
``d`` against its K-FAC quadratic model ``M(d) = g.d + d.(F + lam) d / 2`` scales ``lam`` by
``decay`` if ``rho > 3/4`` and by ``1/decay`` if ``rho < 1/4``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdl.optim.kfac.blocks import (
    Block,
    curvature_product,
    find_blocks,
    get_path,
    init_factors,
    init_inverses,
    precondition,
    refresh,
    uses_eigenbasis,
)
from jaxdl.optim.kfac.factors import eigenbasis_scales


class KFACState(struct.PyTreeNode):
    """count: int32 steps so far; factors / inverses: ``{layer: {"A", "G"}}`` (per block
    kind, :mod:`jaxdl.optim.kfac.blocks`; EKFAC inverses ``{"QA", "QG", "S"}``); damping:
    float32 scalar; velocity: the previous step (adaptive) or momentum buffer, shaped like
    the parameters; curvature_subsample (static, not an array): the train step estimates
    curvature from every ``k``-th example of the batch."""

    count: jax.Array
    factors: dict[str, dict[str, jax.Array]]
    inverses: dict[str, dict[str, jax.Array]]
    damping: jax.Array
    velocity: Any
    curvature_subsample: int = struct.field(pytree_node=False, default=1)


def dense_layers(params: Any) -> dict[str, tuple[int, int, bool]]:
    """``{name: (d_in, d_out, has_bias)}`` for every sub-dict holding a 2-D ``kernel``."""
    return {n: (b.d_in, b.d_out, b.has_bias) for n, b in find_blocks(params).items()
            if b.kind == "dense"}


def damped_inverses(factors: dict[str, jax.Array], damping: jax.Array) -> dict[str, jax.Array]:
    """``(A + pi sqrt(lam) I)^-1`` and ``(G + sqrt(lam)/pi I)^-1`` (factored Tikhonov)."""
    a = factors["A"]
    block = Block("dense", a.shape[0], factors["G"].shape[0], False)
    return refresh(block, factors, {}, damping, ekfac=False)


def kfac(
    learning_rate: optax.ScalarOrSchedule,
    *,
    damping: float = 1e-3,
    l2_damping: float = 0.0,
    ema: float = 0.95,
    inverse_every: int = 20,
    momentum: float = 0.9,
    kl_clip: float = 0.0,
    adaptive: bool = False,
    adapt_damping: bool = False,
    damping_every: int = 5,
    damping_decay: float = 0.95,
    min_damping: float = 1e-8,
    curvature_subsample: int = 1,
    ekfac: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """K-FAC for dense, conv (KFC), embedding and scale-and-shift curvature layers
    (:mod:`jaxdl.optim.kfac.blocks`), optionally with the EKFAC eigenvalue correction.

    Args:
      learning_rate: step size (float or schedule).
      Under ``optax.inject_hyperparams`` pass ``static_args=("inverse_every",
      "adapt_damping", "damping_every", "curvature_subsample", "adaptive")``: those shape
      the compiled step.
      damping: initial Tikhonov damping ``lam``.
      l2_damping: curvature of an L2 penalty in the loss, added to ``lam`` in the inverses.
      ema: factor moving-average decay.
      inverse_every: refresh period of each layer's inverses (staggered across layers).
      momentum: momentum on the preconditioned direction (0 disables).
      kl_clip: cap on ``lr^2 <g, F^-1 g>`` (0 disables).
      adaptive: choose the step size and momentum each step by minimising the exact-Fisher
        quadratic model over ``a D + m d_prev`` (Martens & Grosse, 2015); ``learning_rate``
        then scales that step (1.0 = the model's choice) and ``momentum``/``kl_clip`` are
        unused.
      curvature_subsample: estimate the factors and the exact-Fisher quadratic model from
        every ``k``-th example of the batch (a separate, ``k`` times smaller forward and
        backward pass); the gradient always uses the whole batch.
      adapt_damping, damping_every, damping_decay, min_damping: Levenberg-Marquardt
        adaptation of ``lam`` (needs ``update(..., loss_fn=, loss=)``, passed by the step).
      ekfac: EKFAC (George et al., 2018) for dense and conv blocks: eigendecompose ``A``
        and ``G`` at each refresh instead of inverting them, and rescale by a moving
        average (weight ``ema``) of the per-example gradients' squared coordinates in
        that eigenbasis, updated every step; damping ``lam`` is added to those scales.
        A static argument under ``optax.inject_hyperparams``.
    """
    def given(value):  # inject_hyperparams passes traced arrays: check Python numbers only
        return isinstance(value, (int, float))

    if not isinstance(curvature_subsample, int) or curvature_subsample < 1:
        raise ValueError(f"optimizer.curvature_subsample={curvature_subsample!r}: expected an "
                         "integer >= 1 (under optax.inject_hyperparams, a static_arg).")
    for key, value in (("damping", damping), ("inverse_every", inverse_every),
                       ("damping_every", damping_every)):
        if given(value) and not value > 0:
            raise ValueError(f"optimizer.{key}={value}: expected > 0.")
    for key, value in (("ema", ema), ("momentum", momentum)):
        if given(value) and not 0.0 <= value < 1.0:
            raise ValueError(f"optimizer.{key}={value}: expected in [0, 1).")
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)

    def init(params):
        blocks = find_blocks(params)
        return KFACState(count=jnp.zeros((), jnp.int32),
                         factors={n: init_factors(b) for n, b in blocks.items()},
                         inverses={n: init_inverses(b, ekfac) for n, b in blocks.items()},
                         damping=jnp.asarray(damping, jnp.float32),
                         velocity=jax.tree.map(jnp.zeros_like, params),
                         curvature_subsample=curvature_subsample)

    def update(updates, state, params=None, *, curvature=None, loss_fn=None, loss=None,
               fisher_gram=None, **extra):
        del extra
        if params is None:
            raise ValueError("kfac needs params in update(); " + optax.NO_PARAMS_MSG)
        curvature = curvature or {}
        all_blocks = find_blocks(params)
        missing = sorted(n for n, b in all_blocks.items()
                         if b.kind == "dense" and n not in curvature)
        if missing:
            raise ValueError(
                f"kfac got no curvature statistics for layers {missing}; build them from "
                "jaxdl.optim.kfac.CurvatureLinear and train with jaxdl.train's step (it "
                "passes update(..., curvature=stats)).")
        # conv / embed / scale-shift parameters of plain (non-curvature) NNX layers: passed
        # through unpreconditioned, their (unused) factors left at zero
        blocks = {n: b for n, b in all_blocks.items() if n in curvature}
        if (adaptive or adapt_damping) and (loss_fn is None or loss is None):
            raise ValueError("kfac(adaptive / adapt_damping) needs update(..., loss_fn=, "
                             "loss=), which jaxdl.train's step passes.")
        if adaptive and fisher_gram is None:
            raise ValueError("kfac(adaptive=True) needs update(..., fisher_gram=).")
        count = state.count + 1
        decay = jnp.minimum(ema, 1.0 - 1.0 / count.astype(jnp.float32))
        factors = dict(state.factors)
        for name in blocks:
            factors[name] = {k: decay * old + (1 - decay) * curvature[name][k]
                             for k, old in state.factors[name].items()}
        lam = state.damping + l2_damping
        inverses = dict(state.inverses)
        matrix_blocks = sorted(n for n, b in blocks.items() if b.kind != "scale_shift")
        for index, name in enumerate(matrix_blocks):
            offset = index * inverse_every // max(len(matrix_blocks), 1)
            fresh = (state.count == 0) | ((state.count - offset) % inverse_every == 0)
            inverses[name] = jax.lax.cond(
                fresh, lambda f, old, b=blocks[name]: refresh(b, f, old, lam, ekfac),
                lambda f, old: old, factors[name], state.inverses[name])
            if uses_eigenbasis(blocks[name], ekfac):  # EKFAC: rescale every step
                new_s = eigenbasis_scales(curvature[name]["a_rows"], curvature[name]["g_rows"],
                                          inverses[name]["QA"], inverses[name]["QG"])
                inverses[name] = {**inverses[name],
                                  "S": decay * inverses[name]["S"] + (1 - decay) * new_s}
        direction = jax.tree.map(lambda g: g, updates)  # a copy we can write into
        for name, block in blocks.items():
            parent = get_path(direction, name)
            parent.update(precondition(block, get_path(updates, name), factors[name],
                                       inverses[name], lam, ekfac))
        lr = schedule(state.count)
        if adaptive:
            new_updates, model_change = _quadratic_model_step(
                updates, direction, state.velocity, fisher_gram, lam, l2_damping)
            new_updates = jax.tree.map(lambda u: lr * u, new_updates)
            velocity = new_updates
        else:
            if not given(kl_clip) or kl_clip > 0:
                inner = _dot(updates, direction)
                scale = jnp.minimum(1.0, jnp.sqrt(kl_clip / jnp.maximum(lr**2 * inner, 1e-30)))
                scale = jnp.where(kl_clip > 0, scale, 1.0)
                direction = jax.tree.map(lambda d: d * scale, direction)
            velocity = jax.tree.map(lambda v, d: momentum * v + d, state.velocity, direction)
            new_updates = jax.tree.map(lambda v: -lr * v, velocity)
            model_change = None
        new_damping = state.damping
        if adapt_damping:
            if model_change is None:
                model_change = _factored_model(updates, new_updates, factors, inverses, blocks,
                                               lam, ekfac)
            new_damping = _levenberg_marquardt(
                count % damping_every == 0, loss_fn, loss, params, new_updates, model_change,
                state.damping, damping_decay, min_damping)
        return new_updates, KFACState(count, factors, inverses, new_damping, velocity,
                                      curvature_subsample)

    return optax.GradientTransformationExtraArgs(init, update)


def _dot(a: Any, b: Any) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _quadratic_model_step(grads, direction, previous, fisher_gram, lam, l2):
    """Martens & Grosse (2015, sec. 7): ``d = a D + m d_prev`` with ``D = -F_kfac^-1 g``,
    ``(a, m)`` minimising ``M(d) = g.d + d.(F + lam I) d / 2`` with the exact Fisher ``F``
    (from :func:`~jaxdl.optim.kfac.estimator.fisher_gram_fn`). Returns ``(d, M(d))`` with
    ``M`` undamped except for the L2 term's curvature ``l2``, as the LM rule wants."""
    nat = jax.tree.map(jnp.negative, direction)
    vectors = [nat, previous]
    fisher = fisher_gram(vectors)
    dots = jnp.array([[_dot(u, v) for v in vectors] for u in vectors])
    linear = jnp.array([_dot(grads, v) for v in vectors])
    damped = fisher + (lam) * dots
    # first step (no previous update) or collinear vectors: the step along D alone
    alpha_only = jnp.array([-linear[0] / jnp.maximum(damped[0, 0], 1e-30), 0.0])
    det = damped[0, 0] * damped[1, 1] - damped[0, 1] ** 2
    safe = det > 1e-6 * damped[0, 0] * damped[1, 1]
    solved = jnp.linalg.solve(jnp.where(safe, damped, jnp.eye(2)), -linear)
    coeffs = jnp.where(safe, solved, alpha_only)
    step = jax.tree.map(lambda d, p: coeffs[0] * d + coeffs[1] * p, nat, previous)
    undamped = fisher + l2 * dots
    model_change = coeffs @ linear + 0.5 * coeffs @ undamped @ coeffs
    return step, model_change


def _factored_model(grads, step, factors, inverses, blocks, lam, ekfac):
    """``g.d + d.(F_kfac + lam) d / 2`` with the block-diagonal K-FAC / EKFAC Fisher."""
    curvature = 0.0
    for name, block in blocks.items():
        curvature = curvature + curvature_product(block, get_path(step, name), factors[name],
                                                  inverses[name], ekfac)
    return _dot(grads, step) + 0.5 * (curvature + lam * _dot(step, step))


def _levenberg_marquardt(active, loss_fn, loss, params, step, model_change, damping, decay,
                         min_damping):
    """The LM rule on ``rho = (L(w + d) - L(w)) / M(d)`` (only computed when ``active``)."""

    def adapt(_):
        rho = (loss_fn(optax.apply_updates(params, step)) - loss) / jnp.minimum(
            model_change, -1e-30)
        factor = jnp.where(rho > 0.75, decay, jnp.where(rho < 0.25, 1.0 / decay, 1.0))
        return jnp.maximum(damping * factor, min_damping)

    return jax.lax.cond(active, adapt, lambda _: damping, None)
