"""Device meshes for the one training code path (one device or many).

The trainer always runs under a mesh with a ``data`` axis: with one device it is a 1x mesh
and the compiled step is the same program a plain ``jax.jit`` would produce; with N devices
the batch is split along ``data`` and XLA inserts the gradient all-reduce.

Axis type: ``Auto`` (sharding propagated by the compiler). ``Explicit`` sharding-in-types
would require every model op to carry a sharding rule; for a pure data axis both compile to
the same all-reduce, so Auto keeps arbitrary user models working.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxdl.registry import ConfigError

DATA_AXIS = "data"


def make_mesh(data: int = -1) -> Mesh:
    """A 1-D mesh over ``data`` devices (``-1``: all devices) with an explicit axis type."""
    available = jax.device_count()
    if data == -1:
        data = available
    if not isinstance(data, int) or not 1 <= data <= available:
        raise ConfigError(
            f"mesh.data={data!r}: expected -1 (all) or an integer in [1, {available}] "
            f"(devices available: {available})."
        )
    return jax.make_mesh(
        (data,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:data]
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))
