"""Several hosts (processes), one program: ``jax.distributed.initialize`` and per-process data.

Every process runs the same script. :func:`initialize_from_env` connects it to the others
through a coordinator (process 0's address); afterwards ``jax.devices()`` lists the devices
of *all* processes, ``jax.local_devices()`` this process's, and a mesh built by
:func:`jaxdl.parallel.make_mesh_for` spans every host. Each process loads only its own rows
of the global batch (:func:`process_rows`) and :func:`global_batch` assembles the global,
sharded ``jax.Array`` without any host-to-host copy
(``jax.make_array_from_process_local_data``). The compiled step is unchanged.

Settings come from arguments or the environment: ``JAXDL_COORDINATOR`` (``host:port``),
``JAXDL_NUM_PROCESSES``, ``JAXDL_PROCESS_ID``. On GPU/TPU clusters with a scheduler
(SLURM, Cloud TPU) ``jax.distributed.initialize()`` can also detect them itself.

Check a set-up: run ``python -m jaxdl.parallel.multihost`` in every process (same
environment variables, each its own ``JAXDL_PROCESS_ID``); each prints a JSON line with the
global device count and a cross-process sum that must equal ``n (n - 1) / 2``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from jaxdl.parallel.mesh import batch_sharding, make_mesh_for
from jaxdl.registry import ConfigError

ENV = {"coordinator": "JAXDL_COORDINATOR", "num_processes": "JAXDL_NUM_PROCESSES",
       "process_id": "JAXDL_PROCESS_ID"}


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> dict | None:
    """``{coordinator, num_processes, process_id}`` from ``overrides`` or ``env``; None when
    nothing is set (a single-process run). ConfigError names a missing or bad variable."""
    env = os.environ if env is None else env
    values = {k: overrides.get(k) if overrides.get(k) is not None else env.get(var)
              for k, var in ENV.items()}
    if all(v is None for v in values.values()):
        return None
    for key, value in values.items():
        if value is None:
            raise ConfigError(f"{ENV[key]} is not set: a multi-process run needs "
                              f"{', '.join(ENV.values())}.")
    try:
        num, pid = int(values["num_processes"]), int(values["process_id"])
    except ValueError:
        raise ConfigError(f"{ENV['num_processes']}={values['num_processes']!r} and "
                          f"{ENV['process_id']}={values['process_id']!r}: expected integers."
                          ) from None
    if num < 1 or not 0 <= pid < num:
        raise ConfigError(f"{ENV['process_id']}={pid}: expected an integer in [0, {num}) "
                          f"({ENV['num_processes']}={num}).")
    if ":" not in str(values["coordinator"]):
        raise ConfigError(f"{ENV['coordinator']}={values['coordinator']!r}: expected host:port.")
    return {"coordinator": str(values["coordinator"]), "num_processes": num, "process_id": pid}


def initialize_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> bool:
    """Call ``jax.distributed.initialize`` if a multi-process run is configured.

    Returns True when it initialized, False for a single-process run (nothing to do).
    On CPU the cross-process collectives use gloo (``jax_cpu_collectives_implementation``).
    """
    settings = settings_from_env(env, **overrides)
    if settings is None:
        return False
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=settings["coordinator"],
                               num_processes=settings["num_processes"],
                               process_id=settings["process_id"])
    return True


def process_rows(global_batch_size: int) -> slice:
    """This process's rows of a global batch (contiguous, equal shares)."""
    count, index = jax.process_count(), jax.process_index()
    if global_batch_size % count:
        raise ValueError(f"global batch size {global_batch_size} must be divisible by the "
                         f"{count} processes.")
    share = global_batch_size // count
    return slice(index * share, (index + 1) * share)


def global_batch(local: Mapping[str, Any], mesh: jax.sharding.Mesh,
                 preset: str = "dp") -> dict[str, jax.Array]:
    """Global arrays (leading axis over ``data``) from each process's local rows."""
    sharding = batch_sharding(mesh, preset)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}


def check() -> dict[str, Any]:
    """A cross-process sum over every device of a global array of ``0 .. n-1``."""
    initialize_from_env()
    mesh = make_mesh_for("dp")
    n = 4 * jax.device_count()
    rows = process_rows(n)
    batch = global_batch({"x": np.arange(n, dtype=np.float32)[rows]}, mesh)

    def device_sum(x):
        return jax.lax.psum(x.sum(), "data")

    psum = jax.jit(jax.shard_map(device_sum, mesh=mesh, in_specs=PartitionSpec("data"),
                                 out_specs=PartitionSpec()))(batch["x"])
    total = jax.jit(jnp.sum)(batch["x"])
    return {"process": jax.process_index(), "processes": jax.process_count(),
            "devices": jax.device_count(), "local_devices": jax.local_device_count(),
            "psum": float(psum.addressable_data(0)), "sum": float(total.addressable_data(0)),
            "expected": n * (n - 1) / 2}


if __name__ == "__main__":
    print(json.dumps(check()), flush=True)
    jax.distributed.shutdown()
