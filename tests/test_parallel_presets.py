"""Sharding presets: golden PartitionSpecs, equality with one device, fsdp memory."""

import functools

import jax
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxdl import functional, parallel
from jaxdl.config import base_config
from jaxdl.models import MODELS
from jaxdl.parallel.pmap_legacy import (
    AXIS,
    CrossReplicaBatchNorm,
    make_pmap_train_step,
    replicate,
    shard_batch,
    unreplicate,
)
from jaxdl.parallel.sharded_init import per_device_bytes, sharded_train_state
from jaxdl.registry import ConfigError
from jaxdl.train import build_experiment, validate_config
from jaxdl.train.state import create_train_state
from jaxdl.train.step import make_train_step

VOCAB, SEQ, BATCH, STEPS = 65, 16, 16, 3


def gpt_factory(scan_layers=False, num_layers=2):
    config = ml_collections.ConfigDict({"name": "gpt", "d_model": 32, "num_layers": num_layers,
                                        "num_heads": 4, "scan_layers": scan_layers})

    def factory(rngs):
        return MODELS.build(config, field="model", input_shape=(SEQ,), num_classes=VOCAB,
                            rngs=rngs)

    return factory


def lm_loss(graphdef):
    def loss(params, model_state, batch, rng):
        logits, model_state = functional.apply(graphdef, params, model_state, batch["x"])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return ce, ({}, model_state)

    return loss


def batches():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=(STEPS, BATCH, SEQ + 1), dtype=np.int32)
    return [{"x": t[:, :-1], "y": t[:, 1:]} for t in tokens]


@functools.cache
def train(preset, num_devices):
    mesh = parallel.make_mesh_for(preset, num_devices)
    tx = optax.adamw(1e-2, eps=1e-4, weight_decay=0.1)
    graphdef, state, shardings = sharded_train_state(gpt_factory(num_layers=1), tx,
                                                     jax.random.key(0), mesh, preset)
    batch_sharding = parallel.batch_sharding(mesh, preset)
    step = make_train_step(lm_loss(graphdef), tx, state_sharding=shardings,
                           batch_sharding=batch_sharding,
                           metrics_sharding=parallel.replicated(mesh))
    losses = []
    for batch in batches():
        state, metrics = step(state, jax.device_put(batch, batch_sharding))
        losses.append(float(metrics["loss"]))
    return np.array(losses), jax.device_get(state.params), state


@pytest.fixture(scope="module")
def reference():
    return train("dp", 1)


# Tolerance: float32 sums are reordered by the sharded reductions (all-reduce, reduce-scatter,
# sharded matmul contractions); after 3 AdamW steps at lr 1e-2 the differences measured
# here are ~1e-6 on losses and < 1e-5 on parameters. eps=1e-4: the key bias has an exactly
# zero true gradient (softmax is shift invariant), and with eps=1e-8 Adam would turn its
# ~1e-9 rounding noise into +-lr steps whose sign depends on the summation order.
@pytest.mark.parametrize("preset", ["dp", "fsdp", "tp", "fsdp+tp"])
def test_preset_matches_one_device(reference, preset):
    ref_losses, ref_params, _ = reference
    losses, params, state = train(preset, 8)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
    assert losses[-1] < losses[0] - 0.05  # it trains
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)
    # The state stays where the preset put it (no silent replication by the step).
    expected = parallel.param_specs(state.params, state.params["head"]["kernel"]
                                    .sharding.mesh, preset)
    got = jax.tree.map(lambda x: x.sharding.spec, state.params)
    assert jax.tree.leaves(got, is_leaf=lambda x: isinstance(x, P)) == \
        jax.tree.leaves(expected, is_leaf=lambda x: isinstance(x, P))


BLOCK = "layers/blocks/0/"
GOLDEN = {
    "tp": {"embedding/tokens/embedding": P(), f"{BLOCK}self_attention/qkv/kernel":
           P(None, "model"), f"{BLOCK}self_attention/out/kernel": P("model"),
           f"{BLOCK}mlp_in/kernel": P(None, "model"), f"{BLOCK}mlp_in/bias": P("model"),
           f"{BLOCK}mlp_out/kernel": P("model"), f"{BLOCK}mlp_out/bias": P(),
           f"{BLOCK}norm1/scale": P(), "head/kernel": P()},
    "fsdp": {"embedding/tokens/embedding": P(None, "data"), f"{BLOCK}self_attention/qkv/kernel":
             P(None, "data"), f"{BLOCK}mlp_out/kernel": P("data"), f"{BLOCK}mlp_in/bias":
             P("data"), f"{BLOCK}norm1/scale": P("data"), "head/kernel": P("data"),
             "head/bias": P()},
    "fsdp+tp": {"embedding/tokens/embedding": P(None, "data"),
                f"{BLOCK}self_attention/qkv/kernel": P("data", "model"),
                f"{BLOCK}self_attention/qkv/bias": P("model"),
                f"{BLOCK}self_attention/out/kernel": P("model", "data"),
                f"{BLOCK}mlp_in/kernel": P("data", "model"),
                f"{BLOCK}mlp_out/kernel": P("model", "data"), "head/kernel": P("data")},
    "dp": {f"{BLOCK}mlp_in/kernel": P(), "head/kernel": P()},
}


def flat_specs(params, mesh, preset):
    specs = parallel.param_specs(params, mesh, preset)
    return {"/".join(k): v for k, v in _flatten(specs)}


def _flatten(tree, prefix=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten(value, (*prefix, str(key)))
    else:
        yield prefix, tree


@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_golden_specs(preset):
    _, params, _ = jax.eval_shape(lambda: functional.split_model(gpt_factory()(nnx.Rngs(0))))
    specs = flat_specs(params, parallel.make_mesh_for(preset, 8), preset)
    for path, spec in GOLDEN[preset].items():
        assert specs[path] == spec, (preset, path, specs[path])


def test_golden_specs_pp_scanned_layers():
    abstract = jax.eval_shape(lambda: functional.split_model(gpt_factory(True)(nnx.Rngs(0))))
    specs = flat_specs(abstract[1], parallel.make_mesh_for("pp", 2), "pp")
    assert specs["layers/blocks/mlp_in/kernel"] == P("stage")
    assert specs["layers/blocks/norm1/scale"] == P("stage")
    assert specs["head/kernel"] == P()


def test_fsdp_bytes_per_device_about_one_eighth():
    state = train("fsdp", 8)[2]  # cached: the state after the steps of the test above
    tree = (state.params, state.opt_state)
    replicated = sum(x.nbytes for x in jax.tree.leaves(tree))
    per_device = per_device_bytes(tree)
    assert len(per_device) == 8
    ratio = max(per_device.values()) / replicated
    assert ratio <= 1.15 / 8, ratio
    # Adam's moments follow the parameters' sharding.
    mu = state.opt_state[0].mu
    assert mu["head"]["kernel"].sharding.spec == state.params["head"]["kernel"].sharding.spec


def test_bad_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="mesh.preset='zero'"):
        parallel.make_mesh_for("zero", 8)
    with pytest.raises(ConfigError, match="mesh.model=3"):
        parallel.make_mesh_for("fsdp+tp", 8, model=3)


class BNNet(nnx.Module):
    """Linear -> cross-replica BatchNorm -> relu -> Linear (the pmap vs jit model)."""

    def __init__(self, axis_name, rngs):
        self.fc1 = nnx.Linear(6, 16, rngs=rngs)
        self.bn = CrossReplicaBatchNorm(16, axis_name=axis_name)
        self.fc2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x, *, train=False, rngs=None):
        return self.fc2(jax.nn.relu(self.bn(self.fc1(x), train=train)))


def bn_loss(graphdef):
    def loss(params, model_state, batch, rng):
        logits, model_state = functional.apply(graphdef, params, model_state, batch["x"],
                                               train=True)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return ce, ({}, model_state)

    return loss


def run_bn(axis_name, use_pmap):
    rng = np.random.default_rng(1)
    data = [{"x": rng.normal(size=(32, 6)).astype(np.float32) * (1 + np.arange(32)[:, None]),
             "y": rng.integers(0, 3, size=32).astype(np.int32)} for _ in range(3)]
    tx = optax.sgd(0.1, momentum=0.9)
    graphdef, params, model_state = functional.split_model(BNNet(axis_name, nnx.Rngs(0)))
    state = create_train_state(params, model_state, tx, jax.random.key(0))
    losses = []
    if use_pmap:
        step = make_pmap_train_step(bn_loss(graphdef), tx)
        state = replicate(state, 8)
        for batch in data:
            state, metrics = step(state, shard_batch(batch, 8))
            losses.append(float(metrics["loss"][0]))
        return np.array(losses), jax.device_get(unreplicate(state))
    mesh = parallel.make_mesh(8)
    step = make_train_step(bn_loss(graphdef), tx, state_sharding=parallel.replicated(mesh),
                           batch_sharding=parallel.batch_sharding(mesh))
    for batch in data:
        state, metrics = step(state, jax.device_put(batch, parallel.batch_sharding(mesh)))
        losses.append(float(metrics["loss"]))
    return np.array(losses), jax.device_get(state)


def test_pmap_step_equals_jit_step_with_cross_replica_batchnorm():
    jit_losses, jit_state = run_bn(None, use_pmap=False)
    pmap_losses, pmap_state = run_bn(AXIS, use_pmap=True)
    np.testing.assert_allclose(pmap_losses, jit_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves((pmap_state.params, pmap_state.model_state)),
                    jax.tree.leaves((jit_state.params, jit_state.model_state)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Without the cross-replica mean each device normalizes its own slice: a different run.
    local_losses, _ = run_bn(None, use_pmap=True)
    assert np.abs(local_losses[1:] - jit_losses[1:]).max() > 1e-3


def test_trainer_mesh_preset_option():
    config = base_config()
    config.model = {"name": "mlp", "hidden": (64,)}
    config.mesh.preset = "zero"
    with pytest.raises(ConfigError, match="mesh.preset='zero'"):
        validate_config(config)
    config.mesh.preset = "fsdp"
    experiment = build_experiment(config)
    state = experiment.init_state()
    assert dict(experiment.mesh.shape) == {"data": 8}
    kernel = state.params["layers"][0]["kernel"]  # [64 pixels, 64 units]: tie, first dim
    assert kernel.sharding.spec == P("data")
    assert state.opt_state[0].mu["layers"][0]["kernel"].sharding.spec == P("data")
    assert kernel.addressable_shards[0].data.shape == (8, 64)
    assert state.params["head"]["bias"].sharding.spec == P()  # 10 classes: not divisible
