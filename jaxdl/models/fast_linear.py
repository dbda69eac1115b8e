"""A ``dot_general`` for ``nnx.Linear`` whose backward pass keeps XLA:CPU on its fast matmul.

``nnx.Linear(..., dot_general=dense_dot_general)`` computes exactly what the default
``lax.dot_general`` does, ``y = x @ W`` (``x: [..., n_in]``, ``W: [n_in, n_out]``), through a
``jax.custom_jvp`` with the usual derivatives (e.g. Goodfellow et al., 2016, section 6.5):

    dx = dy @ W^T,        dW = x2^T @ dy2    (x2, dy2: x and dy flattened to 2-D rows).

Why: under autodiff XLA's layout assignment turns the weight gradient into a dot whose both
operands are contracted along their leading axis (``x^T`` and a transposed copy of ``dy``).
XLA:CPU hands such dots to Eigen rather than its faster matmul library (YNNPACK), and Eigen
runs them at a third to a half of the speed of the other matmuls of a GPT train step (measured
single-threaded: 14-25 vs 35-45 GFLOP/s). Here the tangent ``x @ dW`` is written so that its
transpose is a plain row-major ``[n_in, rows] @ [rows, n_out]`` (``x2^T`` materialised behind
``lax.optimization_barrier``, so the transpose is not folded back into the dot), or, when
``x`` is the wider operand, ``(dy2^T x2)^T`` (``dy2^T`` materialised and the product
transposed, each behind a barrier). Forward mode (``jax.jvp``) still works.
Other dimension numbers, a precision or an output sharding fall back to ``lax.dot_general``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _dot(a: jax.Array, b: jax.Array, preferred) -> jax.Array:
    return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())),
                           preferred_element_type=preferred)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _matmul(x: jax.Array, w: jax.Array, preferred) -> jax.Array:
    """``x: [..., n_in] @ w: [n_in, n_out] -> [..., n_out]``."""
    return _dot(x, w, preferred)


@_matmul.defjvp
def _matmul_jvp(preferred, primals, tangents):
    """``dy = dx @ W + x @ dW``, the second term written so that its transpose (the weight
    gradient in reverse mode) is a plain row-major matmul; forward mode works unchanged."""
    x, w = primals
    x_dot, w_dot = tangents
    y = _dot(x, w, preferred)
    rows_x = x.reshape(-1, x.shape[-1])
    if rows_x.shape[1] <= w.shape[1]:
        # Transposes into dW = x2^T @ dy2, x2^T materialised behind a barrier (a strided copy
        # of the narrower operand; XLA:CPU's transposes are slow).
        x_t = lax.optimization_barrier(rows_x.T)
        y_w = lax.dot_general(x_t, w_dot, (((0,), (0,)), ((), ())),
                              preferred_element_type=preferred)
    else:
        # Transposes into dW = (dy2^T @ x2)^T with dy2^T (the narrower operand) materialised
        # and the [n_out, n_in] product transposed afterwards: both barriers keep XLA from
        # folding the transposes back into the dot (which made it an Eigen dot contracting
        # x2 along its rows: for the GPT bench's MLP output layer 39 ms against 28 ms for
        # the same 2.1 GFLOP on one core, in a jax.profiler trace).
        w_dot_t = lax.optimization_barrier(w_dot.T)
        y_w_t = lax.dot_general(w_dot_t, rows_x, (((1,), (1,)), ((), ())),
                                preferred_element_type=preferred)
        y_w = lax.optimization_barrier(y_w_t).T
    return y, _dot(x_dot, w, preferred) + y_w.reshape(y.shape).astype(y.dtype)


def dense_dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None,
                      preferred_element_type=None, out_sharding=None) -> jax.Array:
    """Drop-in for ``lax.dot_general`` in ``nnx.Linear`` (same signature and result)."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    plain = (tuple(lhs_contract) == (lhs.ndim - 1,) and tuple(rhs_contract) == (0,)
             and not lhs_batch and not rhs_batch and rhs.ndim == 2)
    if plain and precision is None and out_sharding is None:
        preferred = None if preferred_element_type is None else jnp.dtype(preferred_element_type)
        return _matmul(lhs, rhs, preferred)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type,
                           out_sharding=out_sharding)
