"""Compressed gradient reduction for data parallelism, with error feedback.

Each device computes the gradient of its shard of the batch, compresses it, and the devices
exchange only the compressed payload (``jax.shard_map`` over the ``data`` axis with
``all_gather``); every device then decompresses all payloads and averages them, so the mean
gradient is identical everywhere. Two compressors:

* ``int8``: per-tensor symmetric quantization, ``q = round(g / s)``, ``s = max|g| / 127``
  (1-bit SGD of Seide et al., 2014, is the extreme of the same idea).
* ``topk``: keep the ``fraction`` of entries largest in magnitude, as (value, index) pairs
  (Lin et al., 2018, Deep Gradient Compression).

Both are biased. *Error feedback* keeps on each device the part of its (gradient + residual)
that was not transmitted and adds it to the next gradient (Seide et al., 2014; Stich et al.,
2018, "Sparsified SGD with memory"), so every coordinate is eventually applied; the residual
is per-device state, an array with a leading ``[num_devices]`` axis sharded over ``data``.

Communication per device per step, for a tensor of ``d`` float32 values on ``N`` devices:
an uncompressed ring all-reduce moves ``2 (N-1)/N * 4d`` bytes. ``int8`` by all-gather
receives ``(N-1) * (d + 4)`` bytes: *less* than the all-reduce only when ``N < 8`` (equal at
``N = 8``), because an all-gather does not shrink as it goes the way a reduce-scatter does;
a psum of the dequantized values would be exact but move float32 again (no saving at all).
Real int8 savings need a reduce-scatter with int8 (or int32) accumulation, which XLA does not
expose for a custom quantization. ``topk`` receives ``(N-1) * 8k`` bytes (value + int32
index): with ``k = d / 100`` that is ``0.08 (N-1) d`` bytes, ~22x less than the all-reduce
at ``N = 8``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.registry import ConfigError

PyTree = Any
METHODS = ("none", "int8", "topk")


def int8_quantize(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(q: int8 [x.shape], scale: float32 [])`` with ``|x - q * scale| <= scale / 2``."""
    scale = jnp.max(jnp.abs(x)).astype(jnp.float32) / 127.0
    safe = jnp.where(scale > 0, scale, 1.0)
    q = jnp.clip(jnp.round(x / safe), -127, 127).astype(jnp.int8)
    return q, scale


def int8_dequantize(q: jax.Array, scale: jax.Array) -> jax.Array:
    return q.astype(jnp.float32) * scale


def topk_count(size: int, fraction: float) -> int:
    """Entries kept out of ``size`` (at least one)."""
    return max(1, math.ceil(fraction * size))


def topk_sparsify(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The ``k`` entries of ``x`` largest in magnitude: ``(values [k], flat indices [k])``."""
    flat = x.reshape(-1)
    _, indices = jax.lax.top_k(jnp.abs(flat), k)
    return flat[indices], indices.astype(jnp.int32)


def _densify(values: jax.Array, indices: jax.Array, like: jax.Array) -> jax.Array:
    dense = jnp.zeros(like.size, jnp.float32).at[indices.reshape(-1)].add(values.reshape(-1))
    return dense.reshape(like.shape)


def compressed_mean(grad: jax.Array, residual: jax.Array | None, *, method: str,
                    axis_name: str, fraction: float = 0.01) -> tuple[jax.Array, jax.Array]:
    """Mean of ``grad`` over ``axis_name`` through a compressed exchange.

    Call inside ``shard_map``. ``residual``: this device's error-feedback memory (None: no
    error feedback). Returns ``(mean gradient, same on every device; new residual)``.
    """
    corrected = grad if residual is None else grad + residual
    if method == "int8":
        q, scale = int8_quantize(corrected)
        sent = int8_dequantize(q, scale)
        qs, scales = jax.lax.all_gather(q, axis_name), jax.lax.all_gather(scale, axis_name)
        mean = jnp.mean(qs.astype(jnp.float32) * scales.reshape((-1,) + (1,) * grad.ndim), 0)
    elif method == "topk":
        values, indices = topk_sparsify(corrected, topk_count(grad.size, fraction))
        sent = _densify(values, indices, grad)
        all_values = jax.lax.all_gather(values, axis_name)
        all_indices = jax.lax.all_gather(indices, axis_name)
        mean = _densify(all_values, all_indices, grad) / all_values.shape[0]
    else:
        sent, mean = corrected, jax.lax.pmean(corrected, axis_name)
    new_residual = jnp.zeros_like(grad) if residual is None else corrected - sent
    return mean.astype(grad.dtype), new_residual


def check_options(method: str, fraction: float) -> None:
    if method not in METHODS:
        raise ConfigError(f"compression.method={method!r}: expected one of {list(METHODS)}.")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"compression.fraction={fraction!r}: expected 0 < value <= 1.")


def init_residual(params: PyTree, mesh: Mesh, axis: str = "data") -> PyTree:
    """Zero error-feedback memory: each leaf ``[num_devices, *shape]`` sharded over ``axis``."""
    n = mesh.shape[axis]
    sharding = NamedSharding(mesh, P(axis))
    return jax.tree.map(
        lambda p: jax.device_put(jnp.zeros((n, *p.shape), jnp.float32), sharding), params)


def compressed_value_and_grad(loss_fn: Callable[..., jax.Array], mesh: Mesh, *,
                              method: str = "int8", fraction: float = 0.01,
                              error_feedback: bool = True, axis: str = "data"):
    """A data-parallel gradient whose reduction is compressed.

    ``loss_fn(params, batch) -> scalar`` (mean over the batch). Returns the uncompiled
    ``f(params, residual, batch) -> (loss, grads, new_residual)``: ``params`` replicated,
    ``batch`` leaves ``[global_batch, ...]`` split over ``axis``, ``residual`` from
    :func:`init_residual` (ignored and returned as zeros without error feedback); ``loss``
    and ``grads`` are the means over all devices (the grads through the compressor).
    """
    check_options(method, fraction)

    def per_device(params, residual, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        residual = jax.tree.map(lambda r: r[0], residual)

        def reduce(g, r):
            return compressed_mean(g, r if error_feedback else None, method=method,
                                   axis_name=axis, fraction=fraction)

        pairs = jax.tree.map(reduce, grads, residual)
        first = lambda i: jax.tree.map(lambda _, pair: pair[i], grads, pairs)
        new_residual = jax.tree.map(lambda r: r[None], first(1))
        return jax.lax.pmean(loss, axis), first(0), new_residual

    # check_vma=False: (1) with it on, JAX psums the gradient of the replicated ``params``
    # itself (the transpose of the implicit broadcast), i.e. an uncompressed all-reduce
    # before ours; (2) an all-gather's result is the same on every device, but the type
    # system does not infer it. The tests check the gradients agree across devices.
    return jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(axis), P(axis)),
                         out_specs=(P(), P(), P(axis)), check_vma=False)
