"""Weight-only quantization of Dense kernels: int8 per output channel, int4 in groups.

Symmetric round-to-nearest (the weight-only scheme of e.g. LLM.int8 (Dettmers et al., 2022)
without outliers, and of GPTQ's grouped int4 layout (Frantar et al., 2023) without its
error-correcting updates). A kernel ``w: [..., in, out]`` becomes integers ``q`` and float32
scales ``s`` with ``w ~ q * s``:

* int8: one scale per output column, ``s = max_i |w[i, j]| / 127``, ``q`` in [-127, 127],
  stored as int8 ``[..., in, out]``;
* int4: one scale per group of ``group_size`` consecutive inputs and output column,
  ``s = max |w[group, j]| / 7``, ``q`` in [-7, 7] (a 4-bit two's-complement nibble; -8 is
  never produced), and two nibbles are PACKED per int8 byte along the input axis (rows
  ``2i`` in the low nibble, ``2i + 1`` in the high one): ``[..., in / 2, out]`` bytes.

Rounding to the nearest integer gives the analytic bound ``|w - q s| <= s / 2`` per element
(no clipping happens since ``|w / s| <= 127`` resp. ``7``). Activations stay float:
:func:`qmatmul` multiplies by the integer matrix and applies the scales afterwards
(int8: to the output columns; int4: per group, before summing groups), and
:func:`dequantize_params` rebuilds float kernels inside a compiled forward, so only the
integers and scales are held in memory between calls.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

BITS = (8, 4)


@dataclasses.dataclass(frozen=True)
class QuantizedTensor:
    """``values``: int8 (int4 packed in pairs for ``bits=4``); ``scale``: float32
    ``[..., 1, out]`` (int8) or ``[..., in / group_size, 1, out]`` (int4)."""

    values: jax.Array
    scale: jax.Array
    bits: int
    group_size: int | None
    shape: tuple

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.scale.nbytes)


jax.tree_util.register_dataclass(QuantizedTensor, data_fields=["values", "scale"],
                                 meta_fields=["bits", "group_size", "shape"])


def _pack_int4(q: jax.Array) -> jax.Array:
    low, high = q[..., 0::2, :], q[..., 1::2, :]
    return (low & 0x0F) | jnp.left_shift(high, 4)


def _unpack_int4(packed: jax.Array) -> jax.Array:
    low = jnp.right_shift(jnp.left_shift(packed, 4), 4)  # arithmetic shift: sign-extends
    high = jnp.right_shift(packed, 4)
    stacked = jnp.stack([low, high], axis=-2)  # [..., in/2, 2, out]
    return stacked.reshape(*packed.shape[:-2], 2 * packed.shape[-2], packed.shape[-1])


def quantize(w: jax.Array, bits: int = 8, group_size: int = 64) -> QuantizedTensor:
    """Quantize a kernel ``[..., in, out]`` (see the module docstring)."""
    if bits not in BITS:
        raise ValueError(f"quantize.bits={bits}: expected one of {list(BITS)}.")
    w = jnp.asarray(w, jnp.float32)
    if w.ndim < 2:
        raise ValueError(f"quantize: expected a kernel [..., in, out]; got shape {w.shape}.")
    n_in = w.shape[-2]
    if bits == 8:
        scale = jnp.max(jnp.abs(w), axis=-2, keepdims=True) / 127.0
        scale = jnp.where(scale > 0, scale, 1.0)
        q = jnp.clip(jnp.round(w / scale), -127, 127).astype(jnp.int8)
        return QuantizedTensor(q, scale, 8, None, tuple(w.shape))
    if group_size < 2 or group_size % 2 or n_in % group_size:
        raise ValueError(f"quantize.group_size={group_size}: expected an even divisor of the "
                         f"kernel's input dimension {n_in}.")
    grouped = w.reshape(*w.shape[:-2], n_in // group_size, group_size, w.shape[-1])
    scale = jnp.max(jnp.abs(grouped), axis=-2, keepdims=True) / 7.0
    scale = jnp.where(scale > 0, scale, 1.0)
    q = jnp.clip(jnp.round(grouped / scale), -7, 7).astype(jnp.int8).reshape(w.shape)
    return QuantizedTensor(_pack_int4(q), scale, 4, group_size, tuple(w.shape))


def integers(qt: QuantizedTensor) -> jax.Array:
    """The integer matrix ``q`` (int8, unpacked), shape of the original kernel."""
    return qt.values if qt.bits == 8 else _unpack_int4(qt.values)


def dequantize(qt: QuantizedTensor) -> jax.Array:
    """``q * s`` as float32, the kernel's shape."""
    q = integers(qt).astype(jnp.float32)
    if qt.bits == 8:
        return q * qt.scale
    g = qt.group_size
    grouped = q.reshape(*q.shape[:-2], q.shape[-2] // g, g, q.shape[-1])
    return (grouped * qt.scale).reshape(qt.shape)


def qmatmul(x: jax.Array, qt: QuantizedTensor) -> jax.Array:
    """``x [..., in] @ dequantize(qt)`` without materialising the float kernel: integer
    matmul then per-column scales (int8) or per-group partial products (int4)."""
    q = integers(qt).astype(x.dtype)
    if qt.bits == 8:
        return (x @ q) * qt.scale[0]
    g = qt.group_size
    xg = x.reshape(*x.shape[:-1], x.shape[-1] // g, g)
    qg = q.reshape(q.shape[0] // g, g, q.shape[-1])
    partial = jnp.einsum("...ng,ngo->...no", xg, qg)  # per-group products [..., groups, out]
    return jnp.sum(partial * qt.scale[:, 0], axis=-2)


def _is_kernel(path, leaf) -> bool:
    name = getattr(path[-1], "key", None)
    return name == "kernel" and getattr(leaf, "ndim", 0) >= 2


def quantize_params(params, bits: int = 8, group_size: int = 64, *, skip: tuple = ()):
    """Replace every Dense ``kernel`` in ``params`` (a pure dict from
    :func:`jaxdl.functional.split_model`) by a :class:`QuantizedTensor`; paths containing a
    name in ``skip`` (e.g. ``("head",)``) stay float."""

    def convert(path, leaf):
        names = {str(getattr(p, "key", p)) for p in path}
        if _is_kernel(path, leaf) and not names & set(skip):
            return quantize(leaf, bits, group_size)
        return leaf

    return jax.tree_util.tree_map_with_path(convert, params)


def dequantize_params(qparams):
    """Float params from :func:`quantize_params`' output (call it inside the jit)."""
    return jax.tree.map(lambda x: dequantize(x) if isinstance(x, QuantizedTensor) else x,
                        qparams, is_leaf=lambda x: isinstance(x, QuantizedTensor))


def param_bytes(params) -> int:
    """Bytes held by a (possibly quantized) params pytree."""
    return int(sum(x.nbytes for x in jax.tree.leaves(params)))
