"""LoRA: low-rank adapters on chosen Dense kernels (Hu et al., 2021, arXiv:2106.09685).

A frozen kernel ``W: [in, out]`` is adapted as ``W + (alpha / rank) * A @ B`` with
``A: [in, rank]`` (random normal, std ``1/sqrt(in)``) and ``B: [rank, out]`` (zeros), so a
fresh adapter leaves the model unchanged. Kernels are chosen by a regular expression on their
path in the params pytree, written ``"layers/0/kernel"`` (keys joined by ``/``).

Design: adapters are a pytree *separate* from the base params, and :func:`lora_apply` merges
them into the params inside the trace before calling :func:`jaxdl.functional.apply`. This
keeps the pure boundary (``f(params, state, batch)``) and works for any model made of
``nnx.Linear`` layers without a module wrapper; the merge costs one ``[in, rank] @ [rank, out]``
product per adapted kernel and step, which is small next to a batch's activations. The one
deviation from the paper: LoRA dropout is applied to the adapter's *input features* with one
mask per call (a row mask on ``A``), not per example, because a merged weight is shared by
the whole batch.

Training updates only the adapter through optax masking: :func:`lora_optimizer` wraps any
optax transformation for the tree ``{"base": params, "adapter": LoraAdapter}`` so the base
receives exactly zero updates (``optax.set_to_zero``) and carries no optimizer state.

Several adapters over one base are a plain ``dict[str, LoraAdapter]``; :func:`switch_adapter`
moves merged weights from one to another (unmerge, then merge).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdl import functional
from jaxdl.registry import ConfigError

PyTree = Any


class LoraSpec(NamedTuple):
    """Static settings of one adapter: ``rank``, ``alpha`` (scale ``alpha/rank``), input
    ``dropout`` rate and the path ``targets`` regex."""

    rank: int
    alpha: float
    dropout: float
    targets: str

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@struct.dataclass
class LoraAdapter:
    """``weights[path] = {"a": [in, rank], "b": [rank, out]}``; ``spec`` is static."""

    weights: dict[str, dict[str, jax.Array]]
    spec: LoraSpec = struct.field(pytree_node=False)


def path_name(path: tuple) -> str:
    """``("layers", 0, "kernel")``-style key path (from ``tree_flatten_with_path``) as
    ``"layers/0/kernel"``."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def target_kernels(params: PyTree, targets: str) -> dict[str, tuple[int, int]]:
    """``{path: (in, out)}`` of every 2-D leaf named ``kernel`` whose path matches
    ``targets`` (``re.fullmatch``)."""
    found = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = path_name(path)
        if name.endswith("kernel") and jnp.ndim(leaf) == 2 and re.fullmatch(targets, name):
            found[name] = tuple(leaf.shape)
    return found


def check_settings(*, rank: int, alpha: float, dropout: float, targets: str) -> None:
    """ConfigError naming the field unless ``rank >= 1``, ``alpha > 0``, ``0 <= dropout < 1``
    and ``targets`` is a valid regular expression (callable before any model exists)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"lora.rank={rank!r}: expected an integer >= 1.")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"lora.dropout={dropout!r}: expected 0 <= dropout < 1.")
    if not alpha > 0:
        raise ConfigError(f"lora.alpha={alpha!r}: expected a positive number.")
    try:
        re.compile(targets)
    except (re.error, TypeError) as error:
        raise ConfigError(f"lora.targets={targets!r}: expected a regular expression "
                          f"({error}).") from None


def init_lora(params: PyTree, key: jax.Array, *, targets: str, rank: int, alpha: float,
              dropout: float = 0.0) -> LoraAdapter:
    """A fresh adapter (``B = 0``) for the kernels of ``params`` matching ``targets``.

    Raises ConfigError (a ValueError) naming the bad field for ``rank < 1``, a rank above a
    kernel's dimensions, ``dropout`` outside ``[0, 1)`` or a pattern that matches no kernel.
    """
    check_settings(rank=rank, alpha=alpha, dropout=dropout, targets=targets)
    shapes = target_kernels(params, targets)
    if not shapes:
        available = sorted(target_kernels(params, ".*"))
        raise ConfigError(f"lora.targets={targets!r} matches no 2-D kernel; the kernels are "
                         f"{available}.")
    weights = {}
    for (name, (n_in, n_out)), k in zip(sorted(shapes.items()),
                                        jax.random.split(key, len(shapes))):
        if rank > min(n_in, n_out):
            raise ConfigError(f"lora.rank={rank} exceeds min(in, out)={min(n_in, n_out)} of "
                             f"{name}.")
        weights[name] = {"a": jax.random.normal(k, (n_in, rank)) / jnp.sqrt(n_in),
                         "b": jnp.zeros((rank, n_out))}
    return LoraAdapter(weights, LoraSpec(rank, float(alpha), float(dropout), targets))


def delta(adapter: LoraAdapter, name: str, dropout_key: jax.Array | None = None) -> jax.Array:
    """``(alpha/rank) * A @ B`` for kernel ``name``; with ``dropout_key``, input rows of
    ``A`` are dropped (inverted dropout) at rate ``spec.dropout``."""
    a, b = adapter.weights[name]["a"], adapter.weights[name]["b"]
    rate = adapter.spec.dropout
    if dropout_key is not None and rate > 0:
        keep = jax.random.bernoulli(dropout_key, 1.0 - rate, (a.shape[0], 1))
        a = jnp.where(keep, a / (1.0 - rate), 0.0)
    return adapter.spec.scale * (a @ b)


def _map_kernels(params: PyTree, adapter: LoraAdapter, combine, dropout_key=None) -> PyTree:
    names = sorted(adapter.weights)
    keys = (dict(zip(names, jax.random.split(dropout_key, len(names))))
            if dropout_key is not None else {})

    def visit(path, leaf):
        name = path_name(path)
        if name not in adapter.weights:
            return leaf
        return combine(leaf, delta(adapter, name, keys.get(name)).astype(leaf.dtype))

    missing = set(names) - set(target_kernels(params, ".*"))
    if missing:
        raise ConfigError(f"adapter kernels {sorted(missing)} are not in the params.")
    return jax.tree_util.tree_map_with_path(visit, params)


def merge(params: PyTree, adapter: LoraAdapter, *, dropout_key: jax.Array | None = None
          ) -> PyTree:
    """``params`` with every adapted kernel replaced by ``W + (alpha/rank) A @ B``."""
    return _map_kernels(params, adapter, jnp.add, dropout_key)


def unmerge(merged: PyTree, adapter: LoraAdapter) -> PyTree:
    """The inverse of :func:`merge` (up to float rounding): ``W - (alpha/rank) A @ B``."""
    return _map_kernels(merged, adapter, jnp.subtract)


def switch_adapter(merged: PyTree, bank: dict[str, LoraAdapter], current: str,
                   new: str) -> PyTree:
    """Merged weights of adapter ``bank[new]`` from those merged with ``bank[current]``."""
    for name in (current, new):
        if name not in bank:
            raise ConfigError(f"adapter={name!r}: expected one of {sorted(bank)}.")
    return merge(unmerge(merged, bank[current]), bank[new])


def lora_apply(graphdef, params: PyTree, state: PyTree, adapter: LoraAdapter, x: Any, *,
               train: bool = False, rng: jax.Array | None = None):
    """:func:`jaxdl.functional.apply` with ``adapter`` merged in the trace.

    With ``train`` and an ``rng``, the rng is split between LoRA dropout and the model.
    Returns ``(outputs, new_state)``.
    """
    dropout_key = None
    if train and rng is not None:
        rng, dropout_key = jax.random.split(rng)
    return functional.apply(graphdef, merge(params, adapter, dropout_key=dropout_key), state,
                            x, train=train, rng=rng)


def lora_optimizer(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` on the adapter, zero updates (and no state) for the frozen base.

    The transformation acts on trees ``{"base": params, "adapter": LoraAdapter}``.
    """

    def labels(tree):
        return {"base": jax.tree.map(lambda _: "frozen", tree["base"]),
                "adapter": jax.tree.map(lambda _: "lora", tree["adapter"])}

    return optax.multi_transform({"lora": tx, "frozen": optax.set_to_zero()}, labels)


def num_adapter_params(adapter: LoraAdapter) -> int:
    """Number of trainable scalars in ``adapter``."""
    return functional.count_params(adapter)
