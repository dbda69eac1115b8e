"""Derivative products over pytrees: JVP/VJP, Jacobians, Hessian, Gauss-Newton and Fisher.

Forward mode (``jax.jvp``) pushes one *input* direction through the program per pass,
so a full Jacobian ``[n_out, n_in]`` costs about ``n_in`` passes; reverse mode
(``jax.vjp``, backpropagation) pulls one *output* direction back per pass, so it costs
about ``n_out`` passes but must keep the forward intermediates alive for the backward
sweep. A scalar loss of many parameters is therefore differentiated in reverse mode,
while a few-inputs / many-outputs map is cheaper in forward mode.

Curvature is never materialised here except by :func:`hessian` (small models only): the
matrix-free products below cost a small constant number of forward/backward passes each:

* Hessian-vector product, forward-over-reverse (Pearlmutter, 1994);
* Gauss-Newton-vector product ``J^T H_L J v`` (Schraudolph, 2002; Martens, 2010);
* Fisher-vector products for softmax cross-entropy, true Fisher (equal to the
  Gauss-Newton matrix for this loss; Martens, 2014/2020) and empirical Fisher.

Every function is pure: call it inside ``jax.jit`` (closing over the callables).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxdl import functional

PyTree = Any

# Looked up at call time so tests can check which engine ``jacobian`` really used.
_JACOBIAN_ENGINES: dict[str, Callable[..., Callable[..., Any]]] = {
    "forward": jax.jacfwd,
    "reverse": jax.jacrev,
}
JACOBIAN_MODES = ("auto", "forward", "reverse")
FISHER_KINDS = ("true", "empirical")
MAX_DENSE_HESSIAN_PARAMS = 5000


def tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
    """Inner product ``sum_leaves <a, b>`` of two pytrees with the same structure."""
    return sum(jax.tree.leaves(jax.tree.map(jnp.vdot, a, b)))


def tree_size(tree: PyTree) -> int:
    """Total number of scalars in a pytree of arrays (or ``jax.ShapeDtypeStruct``)."""
    return sum(math.prod(getattr(leaf, "shape", np.shape(leaf))) for leaf in jax.tree.leaves(tree))


def _as_tuple(value: Any, name: str) -> tuple:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be a tuple of pytrees (one per argument of f), "
                         f"got {type(value).__name__}.")
    return tuple(value)


def jvp(f: Callable[..., PyTree], primals: Sequence[PyTree],
        tangents: Sequence[PyTree]) -> tuple[PyTree, PyTree]:
    """Jacobian-vector product ``J_f(primals) @ tangents`` by forward mode.

    One forward pass carries one *input* direction; the cost is ~2-3x an evaluation of f
    and memory stays at the size of one evaluation (no tape).

    Args:
      f: ``f(*primals) -> outputs`` (any pytree).
      primals: tuple of pytrees, the point.
      tangents: tuple of pytrees, same structure/shapes as ``primals``.

    Returns:
      ``(f(*primals), J @ tangents)``; the second has the structure of the outputs.
    """
    primals = _as_tuple(primals, "primals")
    tangents = _as_tuple(tangents, "tangents")
    if len(primals) != len(tangents):
        raise ValueError(f"tangents must have one entry per primal ({len(primals)}), "
                         f"got {len(tangents)}.")
    return jax.jvp(f, primals, tangents)


def vjp(f: Callable[..., PyTree], primals: Sequence[PyTree],
        cotangent: PyTree) -> tuple[PyTree, tuple[PyTree, ...]]:
    """Vector-Jacobian product ``cotangent^T J_f(primals)`` by reverse mode.

    One backward pass pulls one *output* direction back to every input; the forward
    intermediates are kept for the backward sweep (memory ~ activations of one call).

    Args:
      f: ``f(*primals) -> outputs``.
      primals: tuple of pytrees, the point.
      cotangent: pytree with the structure/shapes of the outputs of f.

    Returns:
      ``(f(*primals), input_cotangents)`` with one pytree per primal (a tuple).
    """
    primals = _as_tuple(primals, "primals")
    outputs, pullback = jax.vjp(f, *primals)
    return outputs, pullback(cotangent)


def choose_jacobian_mode(in_size: int, out_size: int) -> str:
    """``"forward"`` when ``in_size <= out_size`` (fewer JVP passes), else ``"reverse"``.

    Forward mode builds the Jacobian column by column (``in_size`` JVPs); reverse mode row
    by row (``out_size`` VJPs, plus stored intermediates), so the smaller side wins; ties go
    to forward mode, which needs no tape.
    """
    for name, value in (("in_size", in_size), ("out_size", out_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return "forward" if in_size <= out_size else "reverse"


def jacobian(f: Callable[[PyTree], PyTree], x: PyTree, *, mode: str = "auto") -> PyTree:
    """Jacobian of ``f`` at ``x`` with ``jax.jacfwd`` or ``jax.jacrev``.

    Args:
      f: ``f(x) -> outputs`` (pytrees).
      x: the point (pytree); sizes are read from static shapes, so this works under jit.
      mode: ``"auto"`` (:func:`choose_jacobian_mode` on total input/output sizes),
        ``"forward"`` (~n_in JVP passes) or ``"reverse"`` (~n_out VJP passes).

    Returns:
      The Jacobian in JAX's layout: for array in/out, ``[*out_shape, *in_shape]``; for
      pytrees, an outputs-structured pytree of inputs-structured pytrees.
    """
    if mode not in JACOBIAN_MODES:
        raise ValueError(f"mode={mode!r}: expected one of {list(JACOBIAN_MODES)}.")
    if mode == "auto":
        out_size = tree_size(jax.eval_shape(f, x))
        mode = choose_jacobian_mode(max(tree_size(x), 1), max(out_size, 1))
    return _JACOBIAN_ENGINES[mode](f)(x)


def hessian_vector_product(f: Callable[..., jax.Array], params: PyTree, v: PyTree,
                           *args: Any) -> PyTree:
    """``H v`` with ``H = d^2 f / d params^2``, forward-over-reverse (Pearlmutter, 1994).

    A JVP of ``grad f``: one forward pass over the reverse-mode gradient program, ~4x the
    cost of a gradient and no ``[P, P]`` matrix.

    Args:
      f: scalar ``f(params, *args)``.
      params: pytree, the point. v: pytree like params.
      *args: extra (non-differentiated) arguments of f, e.g. a batch.

    Returns:
      pytree like params.
    """
    grad_fn = lambda p: jax.grad(f)(p, *args)
    return jax.jvp(grad_fn, (params,), (v,))[1]


def hvp_reverse_over_reverse(f: Callable[..., jax.Array], params: PyTree, v: PyTree,
                             *args: Any) -> PyTree:
    """``H v`` as ``grad_p <grad f(p), v>`` (reverse-over-reverse; Pearlmutter, 1994).

    Same value as :func:`hessian_vector_product` but a second backward pass (more memory:
    the first gradient's intermediates are taped); kept as an independent check.
    """
    return jax.grad(lambda p: tree_vdot(jax.grad(f)(p, *args), v))(params)


def gauss_newton_vector_product(apply_fn: Callable[[PyTree, Any], jax.Array],
                                loss_fn: Callable[[jax.Array, Any], jax.Array],
                                params: PyTree, v: PyTree, x: Any, y: Any) -> PyTree:
    """Generalized Gauss-Newton product ``G v = J^T H_L J v`` (Schraudolph, 2002;
    Martens, 2010), matrix-free.

    ``J = dz/dparams`` with ``z = apply_fn(params, x)`` and ``H_L = d^2 loss_fn(z, y)/dz^2``.
    Computed as linearize (``J v``, one forward pass) -> HVP of the loss in output space
    -> transpose of the same linearization (``J^T u``, one backward pass); J is never
    formed. G is positive semi-definite whenever the loss is convex in z.

    Args:
      apply_fn: ``apply_fn(params, x) -> z``, e.g. logits ``[batch, classes]``.
      loss_fn: ``loss_fn(z, y) -> scalar`` (e.g. a mean over the batch).
      params: pytree. v: pytree like params. x, y: the batch.

    Returns:
      pytree like params.
    """
    z, forward_linear = jax.linearize(lambda p: apply_fn(p, x), params)
    jv = forward_linear(v)
    loss_grad = jax.grad(lambda out: loss_fn(out, y))
    h_jv = jax.jvp(loss_grad, (z,), (jv,))[1]
    (gv,) = jax.linear_transpose(forward_linear, params)(h_jv)
    return gv


def fisher_vector_product(apply_fn: Callable[[PyTree, Any], jax.Array], params: PyTree,
                          v: PyTree, x: Any, *, y: jax.Array | None = None,
                          kind: str = "true") -> PyTree:
    """Fisher-vector product ``F v`` of a softmax classifier under the *mean* CE loss.

    ``logits = apply_fn(params, x)`` with shape ``[batch, classes]``; B = batch size.

    * ``kind="true"``: ``F = (1/B) sum_i J_i^T (diag(p_i) - p_i p_i^T) J_i`` with
      ``p_i = softmax(logits_i)`` -- the model's own predictive distribution, no labels.
      For softmax cross-entropy this equals the Gauss-Newton matrix (Martens, 2014, "New
      insights and perspectives on the natural gradient method").
    * ``kind="empirical"``: ``F = (1/B) sum_i g_i g_i^T`` with ``g_i`` the gradient of
      example i's cross-entropy at labels ``y: int [batch]``. Computed as a JVP of the
      per-example loss vector (``s_i = g_i . v``) followed by one VJP with cotangent
      ``s / B`` (transpose of the same linearization), so per-example gradients are never
      stored. Assumes examples do not
      interact inside apply_fn (no batch statistics).

    Returns:
      pytree like params.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {list(FISHER_KINDS)}.")
    if kind == "empirical" and y is None:
        raise ValueError("y (int labels [batch]) is required for kind='empirical'.")
    model = lambda p: apply_fn(p, x)
    logits_shape = jax.eval_shape(model, params).shape
    if len(logits_shape) != 2:
        raise ValueError(f"apply_fn(params, x) must return logits [batch, classes], "
                         f"got shape {tuple(logits_shape)}.")
    batch = logits_shape[0]

    if kind == "true":
        logits, forward_linear = jax.linearize(model, params)
        jv = forward_linear(v).astype(jnp.float32)
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        # (diag(p) - p p^T) u, row by row, then the 1/B of the mean loss.
        h_jv = probs * (jv - jnp.sum(probs * jv, axis=-1, keepdims=True)) / batch
        (fv,) = jax.linear_transpose(forward_linear, params)(h_jv.astype(logits.dtype))
        return fv

    def per_example_losses(p: PyTree) -> jax.Array:
        logits = model(p).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    _, losses_linear = jax.linearize(per_example_losses, params)
    grad_dot_v = losses_linear(v)  # [batch]: g_i . v
    (fv,) = jax.linear_transpose(losses_linear, params)(grad_dot_v / batch)
    return fv


def hessian(f: Callable[..., jax.Array], params: PyTree, *args: Any,
            max_params: int = MAX_DENSE_HESSIAN_PARAMS) -> tuple[jax.Array,
                                                                  Callable[[jax.Array], PyTree]]:
    """Exact dense Hessian of scalar ``f(params, *args)`` over the flattened pytree.

    Flattens with ``jax.flatten_util.ravel_pytree`` (leaf order of ``jax.tree.leaves``)
    and runs ``jax.hessian`` (forward-over-reverse): ~P HVP passes and P^2 memory, so it
    is refused above ``max_params``.

    Returns:
      ``(matrix [P, P], unravel)`` where ``unravel(flat [P]) -> pytree like params``.
    """
    flat, unravel = ravel_pytree(params)
    size = flat.shape[0]
    if size > max_params:
        raise ValueError(f"params has {size} scalars; the dense Hessian is limited to "
                         f"max_params={max_params} (use hessian_vector_product instead).")
    matrix = jax.hessian(lambda w: f(unravel(w), *args))(flat)
    return matrix, unravel


def model_apply_fn(graphdef: nnx.GraphDef,
                   model_state: functional.ModelState) -> Callable[[PyTree, Any], jax.Array]:
    """``apply_fn(params, x) -> outputs`` of a jaxdl model in eval mode (``train=False``),
    the form :func:`gauss_newton_vector_product` and :func:`fisher_vector_product` take."""

    def apply_fn(params: PyTree, x: Any) -> jax.Array:
        outputs, _ = functional.apply(graphdef, params, model_state, x, train=False)
        return outputs

    return apply_fn


def model_loss_fn(graphdef: nnx.GraphDef, model_state: functional.ModelState,
                  batch: dict[str, jax.Array]) -> Callable[[PyTree], jax.Array]:
    """``f(params) -> mean softmax cross-entropy`` of a jaxdl model on one batch.

    Batch: ``x: [batch, ...]``, ``y: int [batch]`` and optionally ``mask: [batch]`` (then
    the mean is over the valid examples). The model runs with ``train=False`` so f is a
    deterministic function of params, as curvature estimators require.
    """
    for key in ("x", "y"):
        if key not in batch:
            raise ValueError(f"batch must hold {key!r}; got keys {sorted(batch)}.")
    apply_fn = model_apply_fn(graphdef, model_state)

    def loss(params: PyTree) -> jax.Array:
        logits = apply_fn(params, batch["x"])
        # Up-cast low precision to float32 but keep float64 (gradient checking needs it).
        logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        if "mask" in batch:
            mask = batch["mask"].astype(jnp.float32)
            return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)
        return jnp.mean(nll)

    return loss
