"""TrainStates created already sharded: ``jax.jit(init, out_shardings=...)``.

The state is traced abstractly (``jax.eval_shape``) to get its structure, the preset's rules
give each parameter a sharding, and every optimizer-state leaf inherits the sharding of the
parameter it mirrors. optax states (Adam's ``mu``/``nu``, momentum traces, chains and wrappers)
hold copies of the parameter tree somewhere inside them, so a leaf whose key path *ends with*
a parameter's key path and has that parameter's shape takes its sharding; everything else
(step counters, scalars, the RNG key) is replicated. This works for any optax chain, ours
included, without knowing its state classes. The init then runs once under jit with those
out_shardings, so no device ever holds the full unsharded state (ZeRO-3 initialisation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdl import functional
from jaxdl.parallel.rules import param_shardings, path_keys
from jaxdl.train.state import TrainState, create_train_state


def follow_params(tree: Any, params: Any, shardings: Any, mesh: Mesh) -> Any:
    """Shardings for ``tree`` (e.g. an optax state): a leaf whose path ends with a parameter's
    path and whose shape equals that parameter's takes its sharding; others replicate."""
    table = {}
    flat_params = jax.tree_util.tree_flatten_with_path(params)[0]
    flat_shardings = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
    for (path, leaf), sharding in zip(flat_params, flat_shardings, strict=True):
        table[path_keys(path)] = (tuple(leaf.shape), sharding)
    replicated = NamedSharding(mesh, PartitionSpec())

    def pick(path, leaf):
        keys, shape = path_keys(path), tuple(getattr(leaf, "shape", ()))
        for start in range(len(keys)):
            hit = table.get(keys[start:])
            if hit is not None and hit[0] == shape:
                return hit[1]
        return replicated

    return jax.tree_util.tree_map_with_path(pick, tree)


def state_shardings(abstract_state: TrainState, mesh: Mesh, preset: str) -> TrainState:
    """A TrainState of NamedShardings: params by ``preset``'s rules, optimizer state
    following the params, model state / step / rng replicated."""
    params = param_shardings(abstract_state.params, mesh, preset)
    replicated = NamedSharding(mesh, PartitionSpec())
    return TrainState(
        step=replicated,
        params=params,
        opt_state=follow_params(abstract_state.opt_state, abstract_state.params, params, mesh),
        model_state=jax.tree.map(lambda _: replicated, abstract_state.model_state),
        rng=replicated,
    )


def sharded_train_state(
    factory: Callable[[nnx.Rngs], nnx.Module],
    tx: optax.GradientTransformation,
    key: jax.Array,
    mesh: Mesh,
    preset: str,
) -> tuple[nnx.GraphDef, TrainState, TrainState]:
    """``(graphdef, state, shardings)``: a step-0 TrainState created directly in place.

    ``key`` is split as the trainer does (``init_key, state_key``), so the values equal
    those of :func:`jaxdl.train.experiment.build_experiment` for the same seed.
    """
    init = make_init(factory, tx)
    shardings = state_shardings(jax.eval_shape(init, key), mesh, preset)
    state = jax.jit(init, out_shardings=shardings)(key)
    return functional.abstract_graphdef(factory), state, shardings


def make_init(factory: Callable[[nnx.Rngs], nnx.Module],
              tx: optax.GradientTransformation) -> Callable[[jax.Array], TrainState]:
    """The pure ``key -> TrainState`` the trainer jits (same key split as the trainer)."""

    def init(key: jax.Array) -> TrainState:
        init_key, state_key = jax.random.split(key)
        _, params, model_state = functional.split_model(factory(nnx.Rngs(init_key)))
        return create_train_state(params, model_state, tx, state_key)

    return init


def per_device_bytes(tree: Any) -> dict[int, int]:
    """Bytes each device holds for the arrays of ``tree`` (shards of sharded arrays)."""
    total: dict[int, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            total[shard.device.id] = total.get(shard.device.id, 0) + shard.data.nbytes
    return total
