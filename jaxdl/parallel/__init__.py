"""Meshes and shardings. Data parallelism here; the other presets plug in beside it."""

from jaxdl.parallel.mesh import batch_sharding, make_mesh, replicated

__all__ = ["batch_sharding", "make_mesh", "replicated"]
