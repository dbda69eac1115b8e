"""K-FAC blocks: which parameters form a block, its state, its preconditioner.

A block is found from the parameter tree (``{name: Block}``):

* ``dense``: a sub-dict with a 2-D ``kernel`` ``[d_in, d_out]`` (and maybe ``bias``);
* ``conv``: a ``kernel`` of 3 or more dimensions ``[*kernel_size, in, out]``, seen as the
  matrix ``[in * prod(kernel_size), out]`` (:func:`~jaxdl.optim.kfac.layers.conv_kernel_matrix`);
* ``embed``: an ``embedding`` ``[vocab, features]``;
* ``scale_shift``: a 1-D ``scale`` (and maybe ``bias``) with no kernel (LayerNorm, BatchNorm).

The gradient of a matrix block is ``V = [dW; db]`` (``[d_in (+1), d_out]``). Preconditioners,
with factored Tikhonov damping ``pi = sqrt((tr A / dim A) / (tr G / dim G))``:

* K-FAC: ``(A + pi sqrt(lam))^-1 V (G + sqrt(lam)/pi)^-1``; for ``embed`` ``A`` is a diagonal
  (a vector) and its inverse elementwise.
* EKFAC (George et al., 2018): with ``A = Q_A S_A Q_A^T`` and ``G = Q_G S_G Q_G^T``
  (eigendecompositions refreshed with the inverses) and ``S`` the moving average of the
  per-example gradients' squared coordinates in that basis,
  ``Q_A [(Q_A^T V Q_G) / (S + lam)] Q_G^T``.
* scale_shift: the diagonal Fisher, ``g / (F + lam)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.optim.kfac.layers import conv_kernel_from_matrix, conv_kernel_matrix
from jaxdl.optim.kfac.tags import path_of


class Block(NamedTuple):
    kind: str
    d_in: int  # rows of the matrix view without the bias row (features for scale_shift)
    d_out: int
    has_bias: bool
    has_scale: bool = False
    kernel_shape: tuple[int, ...] = ()


def find_blocks(params: Any, prefix: tuple = ()) -> dict[str, Block]:
    """``{name: Block}`` for every recognised layer in a parameter tree."""
    found: dict[str, Block] = {}
    if not isinstance(params, dict):
        return found
    name = "/".join(str(p) for p in prefix)
    kernel, embedding, scale = (params.get(k) for k in ("kernel", "embedding", "scale"))
    bias = "bias" in params
    if kernel is not None and getattr(kernel, "ndim", 0) == 2:
        found[name] = Block("dense", kernel.shape[0], kernel.shape[1], bias)
    elif kernel is not None and getattr(kernel, "ndim", 0) >= 3:
        found[name] = Block("conv", math.prod(kernel.shape[:-1]), kernel.shape[-1], bias,
                            kernel_shape=tuple(kernel.shape))
    elif embedding is not None and getattr(embedding, "ndim", 0) == 2:
        found[name] = Block("embed", embedding.shape[0], embedding.shape[1], False)
    elif scale is not None and getattr(scale, "ndim", 0) == 1:
        found[name] = Block("scale_shift", scale.shape[0], scale.shape[0], bias, True)
    for key, value in params.items():
        if isinstance(value, dict):
            found.update(find_blocks(value, (*prefix, key)))
    return found


def get_path(tree: Any, name: str) -> Any:
    for key in path_of(name):
        tree = tree[key]
    return tree


def init_factors(block: Block) -> dict[str, jax.Array]:
    rows = block.d_in + block.has_bias
    if block.kind == "scale_shift":
        keys = ("scale",) * block.has_scale + ("shift",) * block.has_bias
        return {k: jnp.zeros((block.d_out,), jnp.float32) for k in keys}
    a_shape = (rows,) if block.kind == "embed" else (rows, rows)
    return {"A": jnp.zeros(a_shape, jnp.float32),
            "G": jnp.zeros((block.d_out, block.d_out), jnp.float32)}


def uses_eigenbasis(block: Block, ekfac: bool) -> bool:
    return ekfac and block.kind in ("dense", "conv")


def init_inverses(block: Block, ekfac: bool) -> dict[str, jax.Array]:
    """Zeros shaped like the refreshed preconditioner state of ``block``."""
    if block.kind == "scale_shift":
        return {}
    rows = block.d_in + block.has_bias
    if uses_eigenbasis(block, ekfac):
        return {"QA": jnp.zeros((rows, rows), jnp.float32),
                "QG": jnp.zeros((block.d_out, block.d_out), jnp.float32),
                "S": jnp.zeros((rows, block.d_out), jnp.float32)}
    return init_factors(block)


def _pi(a: jax.Array, g: jax.Array) -> jax.Array:
    tr_a = jnp.sum(a) / a.shape[0] if a.ndim == 1 else jnp.trace(a) / a.shape[0]
    tr_g = jnp.trace(g) / g.shape[0]
    return jnp.sqrt(jnp.maximum(tr_a, 1e-12) / jnp.maximum(tr_g, 1e-12))


def _damped_inverse(matrix: jax.Array, damping: jax.Array) -> jax.Array:
    eye = jnp.eye(matrix.shape[0], dtype=matrix.dtype)
    chol = jnp.linalg.cholesky(matrix + damping * eye)
    return jax.scipy.linalg.cho_solve((chol, True), eye)


def refresh(block: Block, factors: dict[str, jax.Array], old: dict[str, jax.Array],
            damping: jax.Array, ekfac: bool) -> dict[str, jax.Array]:
    """The expensive part, run every ``inverse_every`` steps: damped inverses (K-FAC) or
    eigenbases (EKFAC; ``S`` carried over)."""
    a, g = factors["A"], factors["G"]
    if uses_eigenbasis(block, ekfac):
        return {"QA": jnp.linalg.eigh(a)[1], "QG": jnp.linalg.eigh(g)[1], "S": old["S"]}
    pi, root = _pi(a, g), jnp.sqrt(damping)
    inv_a = 1.0 / (a + pi * root) if block.kind == "embed" else _damped_inverse(a, pi * root)
    return {"A": inv_a, "G": _damped_inverse(g, root / pi)}


def as_matrix(block: Block, layer_grads: dict[str, jax.Array]) -> jax.Array:
    """The block's gradient as ``V [d_in (+1), d_out]``."""
    if block.kind == "embed":
        return layer_grads["embedding"]
    kernel = layer_grads["kernel"]
    if block.kind == "conv":
        kernel = conv_kernel_matrix(kernel)
    if not block.has_bias:
        return kernel
    return jnp.concatenate([kernel, layer_grads["bias"][None, :]], axis=0)


def from_matrix(block: Block, u: jax.Array) -> dict[str, jax.Array]:
    """Inverse of :func:`as_matrix`."""
    if block.kind == "embed":
        return {"embedding": u}
    kernel = u[:block.d_in]
    if block.kind == "conv":
        kernel = conv_kernel_from_matrix(kernel, block.kernel_shape)
    return {"kernel": kernel, "bias": u[block.d_in]} if block.has_bias else {"kernel": kernel}


def precondition(block: Block, layer_grads: dict[str, jax.Array], factors, inverses,
                 damping: jax.Array, ekfac: bool) -> dict[str, jax.Array]:
    """The preconditioned gradient of one block (same keys as ``layer_grads``)."""
    if block.kind == "scale_shift":
        out = {}
        if block.has_scale:
            out["scale"] = layer_grads["scale"] / (factors["scale"] + damping)
        if block.has_bias:
            out["bias"] = layer_grads["bias"] / (factors["shift"] + damping)
        return out
    v = as_matrix(block, layer_grads)
    if uses_eigenbasis(block, ekfac):
        qa, qg = inverses["QA"], inverses["QG"]
        u = qa @ ((qa.T @ v @ qg) / (inverses["S"] + damping)) @ qg.T
    elif block.kind == "embed":
        u = inverses["A"][:, None] * v @ inverses["G"]
    else:
        u = inverses["A"] @ v @ inverses["G"]
    return from_matrix(block, u)


def curvature_product(block: Block, step: dict[str, jax.Array], factors, inverses,
                      ekfac: bool) -> jax.Array:
    """``d^T F_block d`` of the block's approximate Fisher for the step ``d``."""
    if block.kind == "scale_shift":
        total = 0.0
        if block.has_scale:
            total = total + jnp.sum(factors["scale"] * jnp.square(step["scale"]))
        if block.has_bias:
            total = total + jnp.sum(factors["shift"] * jnp.square(step["bias"]))
        return total
    d = as_matrix(block, step)
    if uses_eigenbasis(block, ekfac):
        qa, qg = inverses["QA"], inverses["QG"]
        return jnp.sum(inverses["S"] * jnp.square(qa.T @ d @ qg))
    a = factors["A"]
    ad = a[:, None] * d if block.kind == "embed" else a @ d
    return jnp.sum(d * (ad @ factors["G"]))
