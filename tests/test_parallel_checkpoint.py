"""Sharded checkpoints restored onto other meshes and presets: 8 -> 4 -> 1 devices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdl import parallel
from jaxdl.checkpoint import Checkpointer, abstract_with_shardings
from jaxdl.models import MODELS
from jaxdl.parallel.sharded_init import make_init, sharded_train_state, state_shardings


def factory(rngs):
    config = ml_collections.ConfigDict({"name": "gpt", "d_model": 32, "num_layers": 1,
                                        "num_heads": 4})
    return MODELS.build(config, field="model", input_shape=(16,), num_classes=64, rngs=rngs)


TX = optax.adamw(1e-3)


def target(preset, num_devices):
    """The abstract state of ``preset`` on ``num_devices`` devices (nothing allocated)."""
    mesh = parallel.make_mesh_for(preset, num_devices)
    abstract = jax.eval_shape(make_init(factory, TX), jax.random.key(0))
    return abstract_with_shardings(abstract, state_shardings(abstract, mesh, preset))


def specs(tree):
    return [x.sharding.spec for x in jax.tree.leaves(tree)]


def test_restore_fsdp8_to_tp4_to_dp1(tmp_path):
    mesh = parallel.make_mesh_for("fsdp", 8)
    _, state, _ = sharded_train_state(factory, TX, jax.random.key(1), mesh, "fsdp")
    # Distinct values in every leaf, Adam moments included (they are zeros at step 0).
    state = jax.tree.map(lambda x: x + jnp.asarray(0.25 + x.size % 7, x.dtype)
                         if jnp.issubdtype(x.dtype, jnp.floating) else x + 3, state)
    saved = jax.device_get(state)
    assert any(len(s) for s in specs(state.params))  # really sharded
    with Checkpointer(tmp_path / "a") as checkpointer:  # asynchronous save
        checkpointer.save(3, state)

    four = target("tp", 4)
    with Checkpointer(tmp_path / "a") as checkpointer:
        on_four, _ = checkpointer.restore(3, four)
    assert specs(on_four) == specs(four)
    assert {d.id for x in jax.tree.leaves(on_four) for d in x.sharding.device_set} == \
        set(range(4))
    for a, b in zip(jax.tree.leaves(on_four), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)

    with Checkpointer(tmp_path / "b") as checkpointer:
        checkpointer.save(4, on_four)
    one = target("dp", 1)
    with Checkpointer(tmp_path / "b") as checkpointer:
        on_one, _ = checkpointer.restore(None, one)
    assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(on_one))
    for a, b in zip(jax.tree.leaves(on_one), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
