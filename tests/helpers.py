"""Small shared pieces for the tests: tiny configs and tree comparisons."""

from __future__ import annotations

import hashlib

import jax
import numpy as np

from jaxdl.config import base_config


def tiny_config(**changes):
    """The quickstart config shrunk for tests: one device, few steps, no progress bar."""
    config = base_config()
    config.mesh.data = 1
    config.num_steps = 40
    config.log_every = 10
    config.eval_every = 20
    config.checkpoint_every = 20
    config.progress_bar = False
    config.plots = False
    config.optimizer.warmup_steps = 5
    for key, value in changes.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def tree_hash(tree) -> str:
    """sha256 over every leaf's bytes, in tree order."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(tree)):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def trees_equal(a, b) -> bool:
    """Bit-for-bit equality of two pytrees of arrays with the same structure."""
    leaves_a, leaves_b = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b)
    )
