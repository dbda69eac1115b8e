"""Second-order optimizers as optax transformations that read curvature from the train step.

The one train step (:mod:`jaxdl.train.step`) passes, whenever the optimizer state holds a
:class:`SecondOrderState` (or a K-FAC state), ``update(..., loss_fn=, loss=,
fisher_vector=)``: the loss of the current batch as a function of the parameters, its value,
and ``v -> F v`` for the exact Fisher / Gauss-Newton matrix of the registered outputs.

* ``newton``: ``w <- w - lr (H + lam I)^-1 g`` with the full Hessian (small models only:
  ``[n, n]`` with ``n`` the parameter count).
* ``natural_gradient``: ``w <- w - lr (F + lam I)^-1 g`` with the exact Fisher formed from
  ``n`` Fisher-vector products (Amari, 1998; small models only).
* ``hessian_free``: truncated Newton (Martens, 2010): ``(G + lam I) d = -g`` solved
  approximately by ``cg_iters`` conjugate-gradient steps on Gauss-Newton-vector products;
  ``G`` is never formed.
* ``lbfgs``: optax's L-BFGS (Liu & Nocedal, 1989) with its zoom line search, for
  full-batch problems (the line search re-evaluates the batch loss).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxdl.optim.registry import OPTIMIZERS


class SecondOrderState(NamedTuple):
    """count: int32 updates so far; inner: the wrapped optimizer's state (L-BFGS) or ()."""

    count: jax.Array
    inner: Any


def _rate(learning_rate: optax.ScalarOrSchedule, count: jax.Array) -> jax.Array:
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _need(name: str, **given: Any) -> None:
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ValueError(f"{name} needs update(..., {', '.join(f'{k}=' for k in missing)}); "
                         "jaxdl.train's step passes them (or pass them yourself).")


def _solve_step(name, matrix_of, lr, damping):
    """A transformation whose direction is ``-(M + damping I)^-1 g``, ``M = matrix_of(...)``."""

    def init(params):
        del params
        return SecondOrderState(jnp.zeros((), jnp.int32), ())

    def update(grads, state, params=None, **extra):
        flat_params, unravel = ravel_pytree(params)
        flat_grads, _ = ravel_pytree(grads)
        matrix = matrix_of(flat_params, unravel, extra)
        matrix = matrix + damping * jnp.eye(matrix.shape[0], dtype=matrix.dtype)
        direction = jnp.linalg.solve(matrix, flat_grads)
        return unravel(-_rate(lr, state.count) * direction), SecondOrderState(state.count + 1, ())

    return optax.GradientTransformationExtraArgs(init, update)


@OPTIMIZERS.register("newton")
def newton(*, learning_rate: optax.ScalarOrSchedule = 1.0, damping: float = 0.0):
    """Damped Newton's method with the exact Hessian of the batch loss."""

    def hessian(flat, unravel, extra):
        _need("newton", loss_fn=extra.get("loss_fn"))
        return jax.hessian(lambda f: extra["loss_fn"](unravel(f)))(flat)

    return _solve_step("newton", hessian, learning_rate, damping)


@OPTIMIZERS.register("natural_gradient")
def natural_gradient(*, learning_rate: optax.ScalarOrSchedule = 1.0, damping: float = 1e-4):
    """Natural gradient with the exact Fisher of the model's output distribution."""

    def fisher(flat, unravel, extra):
        product = extra.get("fisher_vector")
        _need("natural_gradient", fisher_vector=product)
        basis = jnp.eye(flat.shape[0], dtype=flat.dtype)
        return jax.vmap(lambda e: ravel_pytree(product(unravel(e)))[0])(basis)

    return _solve_step("natural_gradient", fisher, learning_rate, damping)


@OPTIMIZERS.register("hessian_free")
def hessian_free(*, learning_rate: optax.ScalarOrSchedule = 1.0, damping: float = 1e-3,
                 cg_iters: int = 20):
    """Truncated Newton with CG on Gauss-Newton-vector products, warm-started from the
    previous solution (Martens, 2010)."""
    if cg_iters < 1:
        raise ValueError(f"optimizer.cg_iters={cg_iters}: expected >= 1.")

    def init(params):
        return SecondOrderState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None, *, fisher_vector=None, **extra):
        del extra
        _need("hessian_free", fisher_vector=fisher_vector)

        def matvec(v):
            return jax.tree.map(lambda fv, x: fv + damping * x, fisher_vector(v), v)

        negative = jax.tree.map(jnp.negative, grads)
        solution, _ = jax.scipy.sparse.linalg.cg(matvec, negative, x0=state.inner,
                                                 maxiter=cg_iters)
        updates = jax.tree.map(lambda d: _rate(learning_rate, state.count) * d, solution)
        return updates, SecondOrderState(state.count + 1, solution)

    return optax.GradientTransformationExtraArgs(init, update)


@OPTIMIZERS.register("lbfgs")
def lbfgs(*, learning_rate: optax.ScalarOrSchedule | None = None, memory_size: int = 10):
    """optax's L-BFGS with a zoom line search (``learning_rate=None``: the line search's
    step); the train step supplies the batch loss as ``value_fn``."""
    del learning_rate  # the line search chooses the step; schedule ignored
    inner = optax.lbfgs(memory_size=memory_size)

    def init(params):
        return SecondOrderState(jnp.zeros((), jnp.int32), inner.init(params))

    def update(grads, state, params=None, *, loss_fn=None, loss=None, **extra):
        del extra
        _need("lbfgs", loss_fn=loss_fn, loss=loss)
        updates, inner_state = inner.update(grads, state.inner, params, value=loss,
                                            grad=grads, value_fn=loss_fn)
        return updates, SecondOrderState(state.count + 1, inner_state)

    return optax.GradientTransformationExtraArgs(init, update)
