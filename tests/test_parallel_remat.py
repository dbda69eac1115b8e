"""Remat policies: same gradients, less scratch memory when recomputing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from jaxdl.models.transformer import LayerStack
from jaxdl.parallel.remat import POLICY_NAMES, checkpoint_policy, remat
from jaxdl.registry import ConfigError

DEPTH, WIDTH, BATCH = 12, 128, 256


def residual_block(w, h):
    """``h + tanh(h w1) w2`` with the pre-activation tagged ``"pre"``."""
    pre = checkpoint_name(h @ w[0], "pre")
    return h + jnp.tanh(pre) @ w[1]


def stack_loss(policy):
    block = remat(residual_block, policy, names=("pre",))

    def loss(weights, x):
        # Scanned layers: the backward scan recomputes one layer per iteration. (Unrolled,
        # XLA's CPU scheduler is free to hoist every recomputation and save nothing.)
        h, _ = jax.lax.scan(lambda h, w: (block(w, h), None), x, weights)
        return jnp.mean(h**2)

    return loss


def problem():
    k1, k2 = jax.random.split(jax.random.key(0))
    weights = jax.random.normal(k1, (DEPTH, 2, WIDTH, WIDTH)) / np.sqrt(WIDTH) * 0.5
    return weights, jax.random.normal(k2, (BATCH, WIDTH))


def test_gradients_identical_across_policies_and_full_remat_saves_memory():
    weights, x = problem()
    grads, memory = {}, {}
    for policy in POLICY_NAMES:
        compiled = jax.jit(jax.grad(stack_loss(policy))).lower(weights, x).compile()
        grads[policy] = compiled(weights, x)
        memory[policy] = compiled.memory_analysis().temp_size_in_bytes
    for policy in POLICY_NAMES[1:]:
        np.testing.assert_allclose(grads[policy], grads["none"], rtol=1e-5, atol=1e-7,
                                   err_msg=policy)
    # Without remat every layer's activations are residuals (~DEPTH * 3 * BATCH * WIDTH
    # floats); with full remat only the layer inputs are kept.
    activations = DEPTH * BATCH * WIDTH * 4
    assert memory["none"] > 2 * activations
    assert memory["full"] < 0.4 * memory["none"], memory
    assert memory["save_names"] < 0.7 * memory["none"], memory


class ResidualMLP(nnx.Module):
    """A transformer-free block with LayerStack's calling convention."""

    def __init__(self, rngs):
        self.up = nnx.Linear(WIDTH, 2 * WIDTH, rngs=rngs)
        self.down = nnx.Linear(2 * WIDTH, WIDTH, rngs=rngs)

    def __call__(self, h, *, dropout_key=None, return_weights=False):
        return h + self.down(jnp.tanh(self.up(h)))


def test_layer_stack_remat_option_reduces_temp_memory():
    """The models' own ``remat`` option (LayerStack, scanned) saves memory the same way."""
    x = jax.random.normal(jax.random.key(1), (BATCH, WIDTH))
    memory, grads = {}, {}
    for policy in ("none", "full"):
        stack = LayerStack(ResidualMLP, DEPTH, scan_layers=True, remat=policy,
                           rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(stack)

        def loss(params, graphdef=graphdef):
            return jnp.mean(nnx.merge(graphdef, params)(x) ** 2)

        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        memory[policy] = compiled.memory_analysis().temp_size_in_bytes
        grads[policy] = compiled(params)
    assert memory["full"] < 0.5 * memory["none"], memory
    for a, b in zip(jax.tree.leaves(grads["full"]), jax.tree.leaves(grads["none"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_unknown_policy_and_missing_names_are_config_errors():
    with pytest.raises(ConfigError, match=r"remat.policy='some'.*'dots_saveable'"):
        checkpoint_policy("some")
    with pytest.raises(ConfigError, match="remat.names"):
        checkpoint_policy("save_names")
    assert checkpoint_policy("dots") is jax.checkpoint_policies.dots_saveable
