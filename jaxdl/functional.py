"""The boundary between stateful NNX modules and pure functions of pytrees.

A model is split once into ``(graphdef, params, state)``: ``graphdef`` is the static
structure, ``params`` the trainable arrays (``nnx.Param``) and ``state`` everything else
(batch statistics, counters), both as plain nested dicts of arrays. From then on every
computation is a pure function of those pytrees: :func:`apply` merges them back into a
module *inside* a trace, calls it, and returns the output with the updated state.

Model convention: ``module(x, *, train: bool, rngs: nnx.Rngs | None) -> outputs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

PyTree = Any
Params = dict[str, Any]
ModelState = dict[str, Any]


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, Params, ModelState]:
    """Split ``model`` into (graphdef, params, state); params/state are plain nested dicts."""
    graphdef, params, state = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(state)


def merge_model(graphdef: nnx.GraphDef, params: Params, state: ModelState) -> nnx.Module:
    """Rebuild a module from its parts (the inverse of :func:`split_model`)."""
    return nnx.merge(graphdef, params, state)


def apply(
    graphdef: nnx.GraphDef,
    params: Params,
    state: ModelState,
    x: Any,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> tuple[Any, ModelState]:
    """Run the model as a pure function.

    Args:
      graphdef, params, state: the parts from :func:`split_model`.
      x: the model input, e.g. images ``[batch, height, width, channels]``.
      train: training mode (dropout on, batch statistics updated).
      rng: a PRNG key for stochastic layers; ``None`` for deterministic calls.

    Returns:
      ``(outputs, new_state)``; ``new_state`` has the structure of ``state``.
    """
    model = nnx.merge(graphdef, params, state)
    rngs = nnx.Rngs(rng) if rng is not None else None
    outputs = model(x, train=train, rngs=rngs)
    _, _, new_state = nnx.split(model, nnx.Param, ...)
    return outputs, nnx.to_pure_dict(new_state)


def init_model(
    factory: Callable[[nnx.Rngs], nnx.Module],
    key: jax.Array,
    *,
    sharding: jax.sharding.Sharding | Callable[[PyTree], PyTree] | None = None,
) -> tuple[nnx.GraphDef, Params, ModelState]:
    """Build a model's parameters directly where they belong.

    The module is traced abstractly once to get its graphdef and shapes, then its
    initialisation runs under ``jax.jit(..., out_shardings=...)`` so parameters are created
    already placed (replicated, or sharded by the rule ``sharding`` computes) instead of
    being built on one device and copied.

    Args:
      factory: ``rngs -> module``.
      key: PRNG key for the initialisation.
      sharding: a Sharding applied to every array, or a function from the abstract
        ``(params, state)`` pytree to a matching pytree of shardings, or None (default
        device).
    """

    def init(k: jax.Array) -> tuple[Params, ModelState]:
        _, params, state = split_model(factory(nnx.Rngs(k)))
        return params, state

    graphdef = abstract_graphdef(factory)
    if callable(sharding) and not isinstance(sharding, jax.sharding.Sharding):
        sharding = sharding(jax.eval_shape(init, key))
    params, state = jax.jit(init, out_shardings=sharding)(key)
    return graphdef, params, state


def abstract_model(factory: Callable[[nnx.Rngs], nnx.Module]) -> nnx.Module:
    """``factory``'s module traced abstractly: shapes and dtypes, no arrays allocated."""
    return nnx.eval_shape(lambda: factory(nnx.Rngs(0)))


def abstract_graphdef(factory: Callable[[nnx.Rngs], nnx.Module]) -> nnx.GraphDef:
    """The graphdef of ``factory``'s module, traced abstractly (no arrays are allocated)."""
    graphdef, _, _ = nnx.split(abstract_model(factory), nnx.Param, ...)
    return graphdef


def count_params(params: PyTree) -> int:
    """Number of scalar parameters in a pytree."""
    return sum(x.size for x in jax.tree.leaves(params))
