"""Distributed debugging on 8 simulated devices: desync, replica checksums, timing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.parallel.debug import (
    assert_in_sync,
    bitwise_checksum,
    find_desync,
    per_device_times,
    replica_gradient_checksums,
)
from jaxdl.parallel.mesh import make_mesh


def replicated_with_odd_device(mesh, value, odd_device, delta):
    """A 'replicated' array whose copy on ``odd_device`` differs by ``delta`` at [0, 0]."""
    odd = value.copy()
    odd[0, 0] += delta
    devices = mesh.devices.reshape(-1)
    pieces = [jax.device_put(odd if i == odd_device else value, d) for i, d in enumerate(devices)]
    return jax.make_array_from_single_device_arrays(value.shape,
                                                    NamedSharding(mesh, P()), pieces)


def test_desync_detector_names_the_leaf_and_the_device():
    mesh = make_mesh()
    value = np.arange(12, dtype=np.float32).reshape(3, 4)
    sharding = NamedSharding(mesh, P())
    params = {"dense": {"kernel": jax.device_put(value, sharding),
                        "bias": replicated_with_odd_device(mesh, value, 5, 2.0**-20)},
              "sharded": jax.device_put(np.ones((8, 2), np.float32),
                                        NamedSharding(mesh, P("data")))}
    desyncs = find_desync(params)
    assert len(desyncs) == 1  # the kernel is in sync; distinct shards are not compared
    assert desyncs[0].leaf == "['dense']['bias']"
    assert desyncs[0].odd_devices == [mesh.devices.reshape(-1)[5].id]
    assert len(desyncs[0].majority_devices) == 7
    with pytest.raises(RuntimeError, match=r"\['dense'\]\['bias'\].*devices \[\d+\] differ"):
        assert_in_sync(params)
    assert_in_sync({"kernel": params["dense"]["kernel"]})  # no error when in sync


def test_checksum_sees_single_bits_and_swaps():
    x = jnp.linspace(-1.0, 1.0, 64)
    flipped = x.at[7].set(jnp.nextafter(x[7], 2.0))  # one unit in the last place
    swapped = x.at[3].set(x[4]).at[4].set(x[3])
    checksums = {int(bitwise_checksum(v)) for v in (x, flipped, swapped)}
    assert len(checksums) == 3
    assert int(bitwise_checksum(x.astype(jnp.bfloat16))) != int(
        bitwise_checksum(flipped.astype(jnp.bfloat16) * 1.01))


def test_replica_gradient_checksums_match_numpy_per_shard():
    mesh = make_mesh()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 3)).astype(np.float32)
    b = rng.normal(size=16).astype(np.float32)
    w = np.array([0.5, -1.0, 2.0], np.float32)

    def loss_fn(params, batch):
        return 0.5 * jnp.mean((batch["a"] @ params["w"] - batch["b"]) ** 2)

    batch = jax.device_put({"a": a, "b": b}, NamedSharding(mesh, P("data")))
    report = replica_gradient_checksums(loss_fn, {"w": jnp.asarray(w)}, batch, mesh)
    # Replica i sees rows 2i, 2i+1: its local gradient is A_i^T (A_i w - b_i) / 2.
    want = [float((a[2 * i: 2 * i + 2].T @ (a[2 * i: 2 * i + 2] @ w - b[2 * i: 2 * i + 2])
                   ).sum() / 2) for i in range(8)]
    np.testing.assert_allclose(report["local_sum"]["['w']"], want, rtol=1e-5, atol=1e-6)
    assert report["consistent"] and len(set(report["reduced"]["['w']"].tolist())) == 1


def test_per_device_times_reflect_the_work():
    mesh = make_mesh()
    sharding = NamedSharding(mesh, P("data"))
    small = jax.device_put(jnp.ones((8, 32, 32)), sharding)
    large = jax.device_put(jnp.ones((8, 512, 512)), sharding)
    step = jax.jit(lambda x: jnp.tanh(x @ x @ x @ x))
    for x in (small, large):
        jax.block_until_ready(step(x))  # compile outside the timing
    reports = {name: [per_device_times(step, x) for _ in range(5)]
               for name, x in (("fast", small), ("slow", large))}
    for report in reports["fast"] + reports["slow"]:
        assert sorted(report["per_device"]) == sorted(d.id for d in jax.devices())
        times = np.array(list(report["per_device"].values()))
        assert np.all(times > 0) and np.all(times <= report["wall"])
        assert report["spread"] == pytest.approx(times.max() - times.min())
    # Best of 5 per device (other test workers share the cores): ~4000x the flops, so every
    # device finishes the large step later than any device finishes the small one.
    best = {name: {d: min(r["per_device"][d] for r in runs) for d in runs[0]["per_device"]}
            for name, runs in reports.items()}
    assert min(best["slow"].values()) > max(best["fast"].values())
    with pytest.raises(ValueError, match="poll_seconds"):
        per_device_times(step, small, poll_seconds=-1.0)
