"""K-FAC inside the one train step: resume through orbax, one compiled variant, lax.scan,
sharded == single device, the exact-Fisher Gram matrix, and a real training curve."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl import functional, parallel
from jaxdl.checkpoint import Checkpointer
from jaxdl.models import MODELS
from jaxdl.optim import build_optimizer
from jaxdl.optim.kfac import fisher_gram_fn
from jaxdl.train import OBJECTIVES, create_train_state, make_train_step
from jaxdl.train.step import train_step_fn
from tests.helpers import trees_equal

KFAC = {"name": "kfac", "learning_rate": 1.0, "adaptive": True, "adapt_damping": True,
        "damping": 1.0, "damping_every": 2, "inverse_every": 3, "l2_damping": 1e-5}


def tiny_autoencoder(optimizer=None, batch_size=16, num_batches=6):
    model = MODELS.build({"name": "autoencoder", "encoder": (16, 8)}, field="model",
                         input_shape=(8, 8, 1), num_classes=10, rngs=nnx.Rngs(0))
    graphdef, params, model_state = functional.split_model(model)
    objective = OBJECTIVES.build({"name": "sigmoid_reconstruction", "l2": 1e-5}, field="loss",
                                 graphdef=graphdef)
    tx, _ = build_optimizer({"schedule": "constant", **(optimizer or KFAC)}, 100)
    rng = np.random.default_rng(0)
    batches = [{"x": rng.uniform(size=(batch_size, 8, 8, 1)).astype(np.float32)}
               for _ in range(num_batches)]
    state = create_train_state(params, model_state, tx, jax.random.key(0))
    return objective, tx, state, batches


def test_checkpoint_restore_resumes_identically(tmp_path):
    objective, tx, state, batches = tiny_autoencoder()
    step = make_train_step(objective.loss, tx, donate=False)
    straight = state
    for batch in batches[:5]:
        straight, _ = step(straight, batch)
    resumed = state
    for batch in batches[:2]:
        resumed, _ = step(resumed, batch)
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(2, resumed)
        checkpointer.wait()
        restored, _ = checkpointer.restore(2, state)
    assert trees_equal(restored, resumed)
    for batch in batches[2:5]:  # crosses inverse refreshes and a damping update
        restored, _ = step(restored, batch)
    assert trees_equal(restored.params, straight.params)
    assert trees_equal(restored.opt_state, straight.opt_state)


def test_one_compiled_variant_and_lax_scan():
    objective, tx, state, batches = tiny_autoencoder()
    traces = []

    def counted(state, batch):
        traces.append(1)
        return train_step_fn(objective.loss, tx)(state, batch)

    jitted = jax.jit(counted)
    sequential = state
    for batch in batches:  # refresh and non-refresh steps, LM and non-LM steps
        sequential, _ = jitted(sequential, batch)
    assert len(traces) == 1

    @jax.jit
    def scanned(state, stacked):
        return jax.lax.scan(train_step_fn(objective.loss, tx), state, stacked)

    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    final, metrics = scanned(state, stacked)
    assert metrics["loss"].shape == (len(batches),)
    for a, b in zip(jax.tree.leaves(final.params), jax.tree.leaves(sequential.params)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def fsdp_sharding(mesh, tree):
    """Split every array whose leading dimension divides by the device count (params,
    momentum, Kronecker factors alike) along the data axis; replicate the rest."""
    n = mesh.devices.size

    def rule(x):
        spec = PartitionSpec("data") if x.ndim and x.shape[0] % n == 0 else PartitionSpec()
        return NamedSharding(mesh, spec)

    return jax.tree.map(rule, tree)


def test_sharded_matches_single_device():
    """Data parallel batch and FSDP-style state on 8 devices vs one device."""
    objective, tx, state, batches = tiny_autoencoder()
    single = make_train_step(objective.loss, tx, donate=False)
    mesh = parallel.make_mesh(8)
    shardings = fsdp_sharding(mesh, state)
    sharded = make_train_step(objective.loss, tx, state_sharding=shardings,
                              batch_sharding=parallel.batch_sharding(mesh), donate=False)
    a, b = state, jax.device_put(state, shardings)
    for batch in batches[:4]:
        a, _ = single(a, batch)
        b, _ = sharded(b, jax.device_put(batch, parallel.batch_sharding(mesh)))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6)
    g_factor = b.opt_state.factors["layers/0"]["G"]  # [16, 16]: stays sharded
    assert g_factor.sharding.spec == PartitionSpec("data")
    assert {s.data.shape for s in g_factor.addressable_shards} == {(2, 16)}
    kernel = b.params["layers"][0]["kernel"]  # [64, 16]
    assert {s.data.shape for s in kernel.addressable_shards} == {(8, 16)}


def test_fisher_gram_matches_the_explicit_gauss_newton_matrix():
    objective, _, state, batches = tiny_autoencoder()
    params, batch = state.params, {"x": jnp.asarray(batches[0]["x"][:4])}
    gram = fisher_gram_fn(objective.loss, params, state.model_state, batch, None)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=flat.shape).astype(np.float32) for _ in range(2)]
    got = gram([unravel(jnp.asarray(v)) for v in vectors])

    def logits_of(theta):
        from jaxdl.optim.kfac import curvature_scope

        with curvature_scope() as scope:
            objective.loss(unravel(theta), state.model_state, batch, None)
        return scope.outputs[0][0].reshape(4, -1)

    jac = np.asarray(jax.jacobian(logits_of)(flat), np.float64)  # [4, 64, n]
    p = np.asarray(jax.nn.sigmoid(logits_of(flat)), np.float64)
    fisher = np.einsum("bon,bo,bom->nm", jac, p * (1 - p), jac) / 4
    want = np.array([[u @ fisher @ v for v in vectors] for u in vectors])
    np.testing.assert_allclose(got, want, rtol=2e-3)


@pytest.mark.slow
def test_kfac_beats_adam_on_a_real_autoencoder_curve():
    """digits 8x8, 64-32-16-4-16-32-64 autoencoder, batch 128, 60 steps from the same start."""
    from jaxdl.data import BatchIterator, load_dataset

    data = load_dataset("digits").train
    finals = {}
    for name, optimizer in (("kfac", KFAC | {"damping_every": 5, "inverse_every": 10}),
                            ("adam", {"name": "adam", "learning_rate": 3e-3})):
        model = MODELS.build({"name": "autoencoder", "encoder": (32, 16, 4)}, field="model",
                             input_shape=(8, 8, 1), num_classes=10, rngs=nnx.Rngs(0))
        graphdef, params, model_state = functional.split_model(model)
        objective = OBJECTIVES.build({"name": "sigmoid_reconstruction", "l2": 1e-5},
                                     field="loss", graphdef=graphdef)
        tx, _ = build_optimizer({"schedule": "constant", **optimizer}, 60)
        state = create_train_state(params, model_state, tx, jax.random.key(0))
        step = make_train_step(objective.loss, tx)
        batches = BatchIterator(data, 128, seed=0)
        losses = []
        for _ in range(60):
            state, metrics = step(state, next(batches))
            losses.append(float(metrics["loss"]))
        finals[name], initial = np.mean(losses[-5:]), losses[0]  # losses[0]: at init
        assert np.isfinite(losses).all()
    assert finals["kfac"] < 0.55 * initial
    assert finals["kfac"] < finals["adam"]
