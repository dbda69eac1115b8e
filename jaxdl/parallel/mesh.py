"""Device meshes for the one training code path (one device or many), and per preset.

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

from jaxdl.parallel.rules import DATA, MODEL, STAGE, check_preset
from jaxdl.registry import ConfigError

DATA_AXIS = DATA


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


def make_mesh_for(preset: str, num_devices: int | None = None, *,
                  model: int | None = None) -> Mesh:
    """The mesh of a sharding preset over the first ``num_devices`` devices (None: all).

    ``dp`` / ``fsdp``: 1-D ``(data,)``. ``tp``: ``(data=1, model=n)``. ``fsdp+tp``:
    ``(data=n/model, model)`` with ``model`` 2 by default. ``pp``: ``(data=1, stage=n)``.
    Every axis is ``AxisType.Auto`` (the compiler propagates shardings; see module doc).
    """
    check_preset(preset)
    available = jax.device_count()
    n = available if num_devices in (None, -1) else num_devices
    if not isinstance(n, int) or not 1 <= n <= available:
        raise ConfigError(f"mesh.data={num_devices!r}: expected -1 (all) or an integer in "
                          f"[1, {available}] (devices available: {available}).")
    if preset in ("dp", "fsdp"):
        shape, names = (n,), (DATA,)
    elif preset == "tp":
        shape, names = (1, n), (DATA, MODEL)
    elif preset == "pp":
        shape, names = (1, n), (DATA, STAGE)
    else:
        model = 2 if model in (None, -1) and n % 2 == 0 else (1 if model in (None, -1) else model)
        if not isinstance(model, int) or model < 1 or n % model:
            raise ConfigError(f"mesh.model={model!r}: expected a divisor of the {n} devices.")
        shape, names = (n // model, model), (DATA, MODEL)
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(shape),
                         devices=jax.devices()[:n])


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, preset: str = "dp") -> NamedSharding:
    """Leading (batch) dimension split over the ``data`` axis (the same for every preset)."""
    check_preset(preset)
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))
