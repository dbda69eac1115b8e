"""Checkpoints: round trip, keep-N, atomicity, restoring onto another mesh, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import parallel
from jaxdl.checkpoint import Checkpointer
from jaxdl.train import create_train_state
from tests.helpers import trees_equal


def make_state(seed=0, sharding=None):
    key = jax.random.key(seed)
    params = {"dense": {"kernel": jax.random.normal(key, (4, 8)), "bias": jnp.zeros(8)}}
    state = create_train_state(params, {"count": jnp.array(3)}, optax.adamw(1e-3), key)
    return jax.device_put(state, sharding) if sharding is not None else state


def test_round_trip_with_data_state(tmp_path):
    state = make_state()
    with Checkpointer(tmp_path, async_save=True) as checkpointer:
        checkpointer.save(7, state, {"epoch": 2, "position": 5})
    with Checkpointer(tmp_path) as checkpointer:
        assert checkpointer.latest_step() == 7
        restored, data_state = checkpointer.restore(None, make_state(seed=1))
    assert trees_equal(restored, state)
    assert data_state == {"epoch": 2, "position": 5}


def test_keeps_only_the_newest(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2, async_save=False) as checkpointer:
        for step in (1, 2, 3, 4):
            checkpointer.save(step, make_state(step))
        assert checkpointer.all_steps() == [3, 4]


def test_unfinished_save_is_ignored(tmp_path):
    """A save killed before its commit leaves a temporary directory, never a 'latest' step."""
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(5, make_state())
    partial = tmp_path / "10.orbax-checkpoint-tmp-1234"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_bytes(b"\x00" * 10)
    with Checkpointer(tmp_path) as checkpointer:
        assert checkpointer.latest_step() == 5
        restored, _ = checkpointer.restore(None, make_state(seed=2))
    assert trees_equal(restored, make_state())


def test_restore_onto_another_mesh(tmp_path):
    """Saved replicated over 8 devices, restored onto 1 device, values identical."""
    eight = parallel.replicated(parallel.make_mesh(8))
    state = make_state(sharding=eight)
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(1, state)
    one = parallel.replicated(parallel.make_mesh(1))
    with Checkpointer(tmp_path) as checkpointer:
        restored, _ = checkpointer.restore(1, make_state(seed=3, sharding=one))
    kernel = restored.params["dense"]["kernel"]
    assert len(kernel.sharding.device_set) == 1
    np.testing.assert_array_equal(kernel, state.params["dense"]["kernel"])


def test_mismatched_structure_is_explained(tmp_path):
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(1, make_state())
    other = create_train_state({"w": jnp.zeros(3)}, {}, optax.sgd(0.1), jax.random.key(0))
    with Checkpointer(tmp_path) as checkpointer, pytest.raises(
        ValueError, match="does not match the state built from the current config"
    ):
        checkpointer.restore(1, other)


def test_no_checkpoint_is_an_error(tmp_path):
    with Checkpointer(tmp_path) as checkpointer, pytest.raises(FileNotFoundError):
        checkpointer.restore(None, make_state())
