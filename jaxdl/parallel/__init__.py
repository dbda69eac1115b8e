"""Meshes and shardings: data parallelism and the presets (dp, fsdp, tp, fsdp+tp, pp)."""

from jaxdl.parallel.mesh import batch_sharding, make_mesh, make_mesh_for, replicated
from jaxdl.parallel.rules import PRESETS, activation_sharding, param_shardings, param_specs

__all__ = ["PRESETS", "activation_sharding", "batch_sharding", "make_mesh", "make_mesh_for",
           "param_shardings", "param_specs", "replicated"]
