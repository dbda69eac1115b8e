"""Distributed debugging: checksums per replica, a desync detector, per-device step times.

In data parallelism every device holds a copy of the parameters and must apply the same
update; one device that drifts (a non-deterministic kernel, a missed all-reduce, memory
corruption, different code on one host) silently breaks the run. The tools here look at
each device's *own* copy of each array:

* :func:`device_checksums` / :func:`find_desync`: a bitwise checksum of every addressable
  shard, computed on the device that holds it (only a scalar per shard comes back to the
  host), compared between devices that hold the same block of the same array. The report
  names the leaf, the block and the devices that disagree with the majority.
* :func:`replica_gradient_checksums`: inside ``jax.shard_map`` over the data axis, the
  checksum of each replica's local gradient (its shard of the batch) and of the reduced
  gradient; the reduced ones must be identical on every replica.
* :func:`per_device_times`: seconds from dispatch until each device's outputs are ready,
  each device's shards polled on their own so a slow device does not hide behind another.

On several hosts each process sees its addressable shards; gather the small checksum tables
with ``jax.experimental.multihost_utils.process_allgather`` to compare across hosts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

PyTree = Any


@jax.jit
def bitwise_checksum(x: jax.Array) -> jax.Array:
    """A uint32 checksum of the bits of ``x`` (position-weighted, so swaps change it)."""
    if x.dtype == jnp.bool_:
        bits = x.astype(jnp.uint32)
    elif x.dtype.itemsize >= 4:
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    else:
        unsigned = {1: jnp.uint8, 2: jnp.uint16}[x.dtype.itemsize]
        bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
    bits = bits.reshape(-1)
    weights = jnp.arange(1, bits.size + 1, dtype=jnp.uint32) * jnp.uint32(2654435761)
    return jnp.sum(bits * weights + (bits >> 16), dtype=jnp.uint32)


def device_checksums(tree: PyTree) -> dict[str, list[tuple[int, tuple, int]]]:
    """``{leaf path: [(device id, shard index, checksum), ...]}`` over addressable shards."""
    table = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        rows = []
        for shard in leaf.addressable_shards:
            key = tuple((s.start, s.stop) for s in shard.index)
            rows.append((shard.device.id, key, bitwise_checksum(shard.data)))
        table[jax.tree_util.keystr(path)] = [(d, k, int(c)) for d, k, c in rows]
    return table


class Desync(NamedTuple):
    """Copies of one block of one leaf that differ between devices."""

    leaf: str
    block: tuple
    majority_devices: list[int]
    odd_devices: list[int]

    def __str__(self) -> str:
        return (f"{self.leaf} block {self.block}: devices {self.odd_devices} differ from "
                f"devices {self.majority_devices}")


def find_desync(tree: PyTree) -> list[Desync]:
    """Every leaf block whose replicas are not bitwise identical (empty list: in sync)."""
    found = []
    for leaf, rows in device_checksums(tree).items():
        blocks: dict[tuple, dict[int, list[int]]] = {}
        for device, block, checksum in rows:
            blocks.setdefault(block, {}).setdefault(checksum, []).append(device)
        for block, groups in blocks.items():
            if len(groups) > 1:
                ordered = sorted(groups.values(), key=len, reverse=True)
                odd = sorted(d for group in ordered[1:] for d in group)
                found.append(Desync(leaf, block, sorted(ordered[0]), odd))
    return found


def assert_in_sync(tree: PyTree, what: str = "params") -> None:
    """RuntimeError listing every desynchronised leaf and device."""
    desyncs = find_desync(tree)
    if desyncs:
        lines = "\n  ".join(str(d) for d in desyncs)
        raise RuntimeError(f"{what} are not in sync across devices:\n  {lines}")


def replica_gradient_checksums(loss_fn: Callable[..., jax.Array], params: PyTree,
                               batch: PyTree, mesh: Mesh, axis: str = "data") -> dict:
    """Per-replica gradient checksums.

    ``loss_fn(params, batch) -> scalar``; ``params`` replicated, ``batch`` split over
    ``axis``. Returns ``{"local_sum": {leaf: float [N]}, "reduced": {leaf: uint32 [N]},
    "consistent": bool}``: the sum of each replica's local gradient (different on each
    replica: different data) and the bitwise checksum of the mean gradient (must agree).
    """

    def per_replica(params, batch):
        grads = jax.grad(loss_fn)(params, batch)
        reduced = jax.lax.pmean(grads, axis)
        local = jax.tree.map(lambda g: jnp.sum(g.astype(jnp.float32))[None], grads)
        return local, jax.tree.map(lambda g: bitwise_checksum(g)[None], reduced)

    # check_vma=False: with it on, the gradient of a replicated input is psum-ed by the
    # transpose of the implicit broadcast, and the local gradients would never be seen.
    fn = jax.shard_map(per_replica, mesh=mesh, in_specs=(P(), P(axis)),
                       out_specs=(P(axis), P(axis)), check_vma=False)
    local, reduced = jax.device_get(jax.jit(fn)(params, batch))
    names = lambda tree: {jax.tree_util.keystr(p): np.asarray(v)
                          for p, v in jax.tree_util.tree_leaves_with_path(tree)}
    local, reduced = names(local), names(reduced)
    consistent = all(len(set(v.tolist())) == 1 for v in reduced.values())
    return {"local_sum": local, "reduced": reduced, "consistent": consistent}


def per_device_times(fn: Callable[..., Any], *args: Any,
                     poll_seconds: float = 5e-5) -> dict[str, Any]:
    """Run ``fn(*args)`` once; seconds from dispatch until each device's outputs are ready.

    Returns ``{"per_device": {device id: seconds}, "wall": seconds, "spread": max - min}``.
    ``fn`` should be compiled already (else compile time is measured). One host thread polls
    every shard's ``is_ready()`` every ``poll_seconds`` (sleeping in between, so the devices'
    own threads keep the cores); a time is good to about the poll interval plus the OS timer
    slack (~0.1 ms). Polling, unlike one waiting thread per device, does not add a
    GIL hand-off per device to the later devices' times.
    """
    if poll_seconds < 0:
        raise ValueError(f"poll_seconds must be >= 0, got {poll_seconds}")
    start = time.perf_counter()
    out = fn(*args)
    shards: dict[int, list[jax.Array]] = {}
    for leaf in jax.tree.leaves(out):
        for shard in leaf.addressable_shards:
            shards.setdefault(shard.device.id, []).append(shard.data)
    ready: dict[int, float] = {}
    while len(ready) < len(shards):
        for device, arrays in shards.items():
            if device not in ready and all(a.is_ready() for a in arrays):
                ready[device] = time.perf_counter() - start
        if len(ready) < len(shards):
            time.sleep(poll_seconds)
    wall = time.perf_counter() - start
    return {"per_device": dict(sorted(ready.items())), "wall": wall,
            "spread": max(ready.values()) - min(ready.values())}
