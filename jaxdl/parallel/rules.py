"""Logical axis names and one rules table per sharding preset.

A parameter's dimensions get *logical* names (``embed``, ``mlp``, ``heads``, ``vocab``,
``layers``) from a table of path patterns over the parameter pytree, so the existing models
need no annotations. A preset's rules table then maps each logical name to a mesh axis (or
None = replicated). The path table is used instead of flax's ``nnx.with_partitioning``
metadata because our models build plain ``nnx.Linear`` / ``nnx.Embed`` layers and the trainer
works on plain dicts (``jaxdl.functional.split_model``); a table covers every model with no
rewrite, and an unmatched parameter is simply replicated.

Presets (mesh axes in brackets):

* ``dp``      [data]: parameters replicated, the batch split (data parallelism).
* ``fsdp``    [data]: as ``dp`` for the batch; every parameter (and, through
  :func:`jaxdl.parallel.sharded_init.state_shardings`, its optimizer moments) is split along
  its largest dimension divisible by the data-axis size: ZeRO-3 (Rajbhandari et al., 2020).
  XLA all-gathers a parameter where it is used and reduce-scatters its gradient.
* ``tp``      [data=1 x model]: Megatron-style tensor parallelism (Shoeybi et al., 2019): the
  first MLP kernel column-parallel (``mlp`` on its output), the second row-parallel (``mlp``
  on its input), attention q/k/v and output projections split by ``heads``, and the
  vocabulary of the embedding / output head split (vocab-parallel) when divisible.
* ``fsdp+tp`` [data x model]: ``tp`` on ``model``, then ``fsdp`` over ``data`` on the
  largest remaining dimension.
* ``pp``      [data=1 x stage]: the stacked ``layers`` axis (``scan_layers=True`` models)
  over ``stage``; the schedules (GPipe, 1F1B) live in ``jaxdl.parallel.pipeline``.

The fused ``qkv`` kernel is laid out ``[q heads | k heads | v heads]``; splitting its output
dimension into contiguous blocks is head-parallel when each block holds whole heads. The
meshes use ``AxisType.Auto``, so whatever the split, XLA (GSPMD) inserts the collectives that
keep the result equal to the one-device computation; the tests check exactly that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdl.registry import ConfigError

DATA, MODEL, STAGE = "data", "model", "stage"
PRESETS = ("dp", "fsdp", "tp", "fsdp+tp", "pp")
LOGICAL_AXES = ("batch", "seq", "embed", "mlp", "heads", "kv", "vocab", "layers")

# (regex on the "/"-joined parameter path, logical names of the trailing dimensions).
# First match wins. Leading dimensions beyond the names are the stacked ``layers`` axis of a
# scanned LayerStack when the path runs through ``layers/blocks`` without an index.
PARAM_PATTERNS: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"(^|/)embedding/tokens/embedding$", ("vocab", "embed")),
    (r"(^|/)embedding/learned/table$", (None, "embed")),
    (r"(^|/)(self_attention|cross_attention)/(qkv|query)/kernel$", ("embed", "heads")),
    (r"(^|/)(self_attention|cross_attention)/(qkv|query)/bias$", ("heads",)),
    (r"(^|/)cross_attention/key_value/kernel$", ("embed", "kv")),
    (r"(^|/)cross_attention/key_value/bias$", ("kv",)),
    (r"(^|/)(self_attention|cross_attention)/out/kernel$", ("heads", "embed")),
    (r"(^|/)(self_attention|cross_attention)/out/bias$", ("embed",)),
    (r"(^|/)mlp_in/kernel$", ("embed", "mlp")),
    (r"(^|/)mlp_in/bias$", ("mlp",)),
    (r"(^|/)mlp_out/kernel$", ("mlp", "embed")),
    (r"(^|/)mlp_out/bias$", ("embed",)),
    (r"^head/kernel$", ("embed", "vocab")),
    (r"^head/bias$", ("vocab",)),
    (r"(^|/)(norm\w*|final_norm)/(scale|bias)$", ("embed",)),
)
_SCANNED = re.compile(r"(^|/)layers/blocks/(?!\d+/)")

# Logical name -> mesh axis, per preset. Names absent from a table are replicated.
RULES: dict[str, dict[str, str | None]] = {
    "dp": {"batch": DATA},
    "fsdp": {"batch": DATA},
    "tp": {"batch": DATA, "mlp": MODEL, "heads": MODEL, "kv": MODEL, "vocab": MODEL},
    "fsdp+tp": {"batch": DATA, "mlp": MODEL, "heads": MODEL, "kv": MODEL, "vocab": MODEL},
    "pp": {"batch": DATA, "layers": STAGE},
}
FSDP_PRESETS = ("fsdp", "fsdp+tp")


def check_preset(preset: str, field: str = "mesh.preset") -> str:
    """Return ``preset`` or raise ConfigError listing the valid names."""
    if preset not in PRESETS:
        raise ConfigError(f"{field}={preset!r}: expected one of {list(PRESETS)}.")
    return preset


def path_keys(path: Sequence[Any]) -> tuple[str, ...]:
    """``("layers", "blocks", "0", "mlp_in", "kernel")`` from a ``jax.tree_util`` key path."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return tuple(parts)


def path_string(path: Sequence[Any]) -> str:
    """``"layers/blocks/0/mlp_in/kernel"`` from a ``jax.tree_util`` key path."""
    return "/".join(path_keys(path))


def logical_axes(path: str, ndim: int) -> tuple[str | None, ...]:
    """The logical name of each of the ``ndim`` dimensions of the parameter at ``path``."""
    for pattern, names in PARAM_PATTERNS:
        if re.search(pattern, path) and len(names) <= ndim:
            lead = ndim - len(names)
            stacked = ("layers",) if lead and _SCANNED.search(path) else (None,)
            return stacked * min(lead, 1) + (None,) * max(lead - 1, 0) + names
    if ndim and _SCANNED.search(path):
        return ("layers",) + (None,) * (ndim - 1)
    return (None,) * ndim


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    preset: str) -> PartitionSpec:
    """The PartitionSpec for logical ``names`` under ``preset``; a dimension whose size the
    mesh axis does not divide (or whose axis is already used) stays replicated."""
    rules, used, spec = RULES[check_preset(preset)], set(), []
    for name, size in zip(names, shape, strict=True):
        axis = rules.get(name) if name is not None else None
        if axis is None or axis in used or axis not in mesh.shape or size % mesh.shape[axis]:
            spec.append(None)
        else:
            spec.append(axis)
            used.add(axis)
    if preset in FSDP_PRESETS and DATA not in used and mesh.shape.get(DATA, 1) > 1:
        spec = _fsdp_dim(spec, shape, mesh.shape[DATA])
    while spec and spec[-1] is None:
        spec.pop()
    return PartitionSpec(*spec)


def _fsdp_dim(spec: list, shape: Sequence[int], n: int) -> list:
    """Shard the largest free dimension divisible by ``n`` over ``data`` (ties: the first)."""
    free = [i for i, (axis, size) in enumerate(zip(spec, shape)) if axis is None and size % n == 0]
    if free:
        best = max(free, key=lambda i: (shape[i], -i))
        spec = [*spec[:best], DATA, *spec[best + 1:]]
    return spec


def param_specs(params: Any, mesh: Mesh, preset: str) -> Any:
    """A pytree of PartitionSpecs matching ``params`` (arrays or ShapeDtypeStructs)."""
    check_preset(preset)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: logical_to_spec(logical_axes(path_string(path), len(x.shape)),
                                        x.shape, mesh, preset), params)


def param_shardings(params: Any, mesh: Mesh, preset: str) -> Any:
    """A pytree of NamedShardings matching ``params`` under ``preset``'s rules."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), param_specs(params, mesh, preset),
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def activation_sharding(mesh: Mesh, preset: str, names: Sequence[str | None],
                        shape: Sequence[int]) -> NamedSharding:
    """Sharding for an activation with logical ``names`` (e.g. ``("batch", "seq", "embed")``),
    for ``jax.lax.with_sharding_constraint`` inside a model or step (no fsdp pass: only
    parameters are fully sharded)."""
    rules, used, spec = RULES[check_preset(preset)], set(), []
    for name, size in zip(names, shape, strict=True):
        axis = rules.get(name) if name is not None else None
        ok = axis is not None and axis not in used and axis in mesh.shape
        ok = ok and size % mesh.shape[axis] == 0
        spec.append(axis if ok else None)
        used.update([axis] if ok else [])
    return NamedSharding(mesh, PartitionSpec(*spec))

