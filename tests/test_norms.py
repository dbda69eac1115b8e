"""Normalization layers against float64 numpy references; BatchNorm modes and running
statistics; synchronized BatchNorm over 8 devices equals single-device BatchNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl import functional, parallel
from jaxdl.models import norms

RNG = np.random.default_rng(0)


def _x(*shape):
    return (RNG.normal(size=shape) * 3 + 1.5).astype(np.float32)


class _ConvBN(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.bn = norms.BatchNorm(4, momentum=0.8)

    def __call__(self, x, *, train=False, rngs=None):
        return jax.nn.relu(self.bn(self.conv(x), train=train)).sum((1, 2))


def test_batchnorm_train_uses_batch_statistics_and_updates_running_averages():
    x = _x(16, 5, 5, 3)
    graphdef, params, state = functional.split_model(norms.BatchNorm(3, momentum=0.8))
    y, new_state = functional.apply(graphdef, params, state, x, train=True)
    x64 = x.astype(np.float64)
    mean, var = x64.mean((0, 1, 2)), x64.var((0, 1, 2))
    np.testing.assert_allclose(y, (x64 - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new_state["mean"], 0.2 * mean, rtol=1e-5)
    np.testing.assert_allclose(new_state["var"], 0.8 + 0.2 * var, rtol=1e-5)


def test_batchnorm_eval_uses_running_statistics_and_keeps_state():
    x = _x(4, 3)
    graphdef, params, state = functional.split_model(norms.BatchNorm(3))
    state = {"mean": jnp.array([1.0, -2.0, 0.5]), "var": jnp.array([4.0, 0.25, 9.0])}
    params = {"scale": jnp.array([2.0, 1.0, 0.5]), "bias": jnp.array([0.0, 1.0, -1.0])}
    y, new_state = functional.apply(graphdef, params, state, x, train=False)
    expected = (x - np.array([1, -2, 0.5])) / np.sqrt(np.array([4, 0.25, 9]) + 1e-5)
    np.testing.assert_allclose(y, expected * [2, 1, 0.5] + [0, 1, -1], rtol=1e-5, atol=1e-5)
    for key in state:
        np.testing.assert_array_equal(new_state[key], state[key])
    # a single example in eval mode is not normalized to zero (batch statistics would be)
    y1, _ = functional.apply(graphdef, params, state, x[:1], train=False)
    np.testing.assert_allclose(y1, y[:1], rtol=1e-6)


def test_synchronized_batchnorm_over_8_devices_equals_single_device():
    graphdef, params, state = functional.split_model(_ConvBN(nnx.Rngs(0)))
    x = _x(32, 6, 6, 3)

    def loss(p, s, batch):
        out, new_s = functional.apply(graphdef, p, s, batch, train=True)
        return (out ** 2).mean(), (out, new_s)

    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (l1, (o1, s1)), g1 = step(params, state, jax.device_put(x, jax.devices()[0]))
    mesh = parallel.make_mesh(8)
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    assert len(sharded.sharding.device_set) == 8
    (l8, (o8, s8)), g8 = step(params, state, sharded)
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    np.testing.assert_allclose(o8, o1, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(s8), jax.tree.leaves(s1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1)):
        # the conv bias gradient is exactly 0 in theory (BN removes it): compare by scale
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(g1["conv"]["kernel"]).max())
    # per-shard (unsynchronized) statistics would differ: the test can tell them apart
    local = [functional.apply(graphdef, params, state, x[i * 4:(i + 1) * 4], train=True)[1]
             for i in range(8)]
    local_mean = np.mean([s["bn"]["mean"] for s in local], 0)
    local_var = np.mean([s["bn"]["var"] for s in local], 0)
    np.testing.assert_allclose(local_mean, s1["bn"]["mean"], rtol=1e-4, atol=1e-6)
    assert np.abs(local_var - s1["bn"]["var"]).max() > 1e-4


def test_layer_and_rms_norm_match_numpy():
    x = _x(2, 5, 6)
    x64 = x.astype(np.float64)
    ln = norms.LayerNorm(6)
    expected = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(x), expected, rtol=1e-4, atol=1e-5)
    rms = norms.RMSNorm(6)
    expected = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(rms(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm_matches_numpy(groups):
    x = _x(3, 4, 5, 6)
    g = x.astype(np.float64).reshape(3, 4, 5, groups, 6 // groups)
    mean = g.mean((1, 2, 4), keepdims=True)
    var = g.var((1, 2, 4), keepdims=True)
    expected = ((g - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(norms.GroupNorm(6, num_groups=groups)(x), expected,
                               rtol=1e-4, atol=1e-5)


def test_instance_norm_normalizes_each_example_and_channel_over_space():
    x = _x(3, 4, 5, 6)
    y = np.asarray(norms.InstanceNorm(6)(x), np.float64)
    np.testing.assert_allclose(y.mean((1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var((1, 2)), 1.0, rtol=1e-3)


def test_group_norm_rejects_non_divisor():
    with pytest.raises(ValueError, match="num_groups=4"):
        norms.GroupNorm(6, num_groups=4)


def test_weight_norm_lengths_initial_function_and_orthogonal_gradient():
    layer = norms.WeightNormLinear(5, 3, rngs=nnx.Rngs(0))
    x = _x(7, 5)
    np.testing.assert_allclose(np.linalg.norm(layer.kernel(), axis=0), layer.g[...], rtol=1e-5)
    np.testing.assert_allclose(layer(x), x @ np.asarray(layer.v[...]), rtol=1e-4, atol=1e-4)
    graphdef, params, state = functional.split_model(layer)

    def loss(p):
        return (functional.apply(graphdef, p, state, x)[0] ** 3).sum()

    grad_v = np.asarray(jax.grad(loss)(params)["v"], np.float64)
    v = np.asarray(params["v"], np.float64)
    # w = g v / |v| is invariant to the length of v, so dL/dv is orthogonal to v per column
    cos = (grad_v * v).sum(0) / (np.linalg.norm(grad_v, axis=0) * np.linalg.norm(v, axis=0))
    np.testing.assert_allclose(cos, 0.0, atol=1e-4)
    conv = norms.WeightNormConv(2, 4, 3, rngs=nnx.Rngs(1))
    k = np.asarray(conv.kernel())
    np.testing.assert_allclose(np.sqrt((k ** 2).sum((0, 1, 2))), conv.g[...], rtol=1e-5)


def test_make_norm_names():
    assert isinstance(norms.make_norm("batch", 8), norms.BatchNorm)
    assert isinstance(norms.make_norm("group", 12, num_groups=8), norms.GroupNorm)
    with pytest.raises(ValueError, match="model.norm='bn'"):
        norms.make_norm("bn", 8)
