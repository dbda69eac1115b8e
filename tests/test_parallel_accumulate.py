"""In-step gradient accumulation: k microbatches equal one large batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models import MODELS
from jaxdl.parallel.accumulate import (
    accumulated_value_and_grad,
    split_microbatches,
    strided_microbatches,
)
from jaxdl.parallel.precision import policy_train_step
from jaxdl.train.objectives import classification


def mlp_problem(batch_size=32, seed=0):
    model = MODELS.build({"name": "mlp", "hidden": (16,)}, field="model", input_shape=(10,),
                         num_classes=4, rngs=nnx.Rngs(seed))
    graphdef, params, state = functional.split_model(model)
    rng = np.random.default_rng(seed)
    batch = {"x": rng.normal(size=(batch_size, 10)).astype(np.float32),
             "y": rng.integers(0, 4, size=batch_size).astype(np.int32)}
    return classification(graphdef=graphdef).loss, params, state, batch


@pytest.mark.parametrize("unroll", [False, True])
def test_four_microbatches_equal_one_large_batch(unroll):
    loss_fn, params, state, batch = mlp_problem()
    full = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    accumulated = jax.jit(accumulated_value_and_grad(loss_fn, 4, unroll=unroll))
    (loss_a, (metrics_a, _)), grads_a = full(params, state, batch, None)
    (loss_b, (metrics_b, _)), grads_b = accumulated(params, state, batch, None)
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    np.testing.assert_allclose(metrics_b["accuracy"], metrics_a["accuracy"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    # The gradient is not trivially zero, so the comparison means something.
    assert float(jnp.abs(grads_a["head"]["kernel"]).max()) > 1e-3


class BatchNormNet(nnx.Module):
    """Linear -> BatchNorm -> mean: a model with running statistics to thread."""

    def __init__(self, rngs):
        self.linear = nnx.Linear(3, 5, rngs=rngs)
        self.norm = nnx.BatchNorm(5, momentum=0.5, rngs=rngs)

    def __call__(self, x, *, train=False, rngs=None):
        return self.norm(self.linear(x), use_running_average=not train)


def test_model_state_is_threaded_microbatch_by_microbatch():
    """Running statistics equal k sequential calls; the gradient is the mean of theirs."""
    graphdef, params, state = functional.split_model(BatchNormNet(nnx.Rngs(0)))

    def loss_fn(params, model_state, batch, rng):
        out, new_state = functional.apply(graphdef, params, model_state, batch["x"],
                                          train=True)
        return jnp.mean((out - batch["t"]) ** 2), ({"out_mean": out.mean()}, new_state)

    rng = np.random.default_rng(1)
    batch = {"x": rng.normal(size=(12, 3)).astype(np.float32),
             "t": rng.normal(size=(12, 5)).astype(np.float32)}
    (loss, (_, new_state)), grads = jax.jit(accumulated_value_and_grad(loss_fn, 3))(
        params, state, batch, None)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    seq_state, losses, seq_grads = state, [], []
    for i in range(3):
        piece = {k: v[4 * i: 4 * i + 4] for k, v in batch.items()}
        (value, (_, seq_state)), g = grad_fn(params, seq_state, piece, None)
        losses.append(value)
        seq_grads.append(g)
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(seq_state)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    mean_grads = jax.tree.map(lambda *g: sum(g) / 3, *seq_grads)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(mean_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # Different from the running statistics of one large batch (BatchNorm is batch-coupled).
    (_, (_, large_state)), _ = grad_fn(params, state, batch, None)
    assert not np.allclose(large_state["norm"]["mean"], new_state["norm"]["mean"])


def test_indivisible_batch_names_the_field():
    with pytest.raises(ValueError, match=r"num_microbatches=5.*\['x'\].*leading dimension 12"):
        split_microbatches({"x": np.zeros((12, 2))}, 5)
    with pytest.raises(ValueError, match="num_microbatches=0"):
        split_microbatches({"x": np.zeros((12, 2))}, 0)


def test_policy_step_with_microbatches_updates_like_one_batch():
    """The composed step (precision policy + accumulation + optax) of the integration path."""
    loss_fn, params, state, batch = mlp_problem()
    tx = optax.sgd(0.5)
    results = [jax.jit(policy_train_step(loss_fn, tx, "f32", num_microbatches=k))(
        params, state, tx.init(params), batch, None) for k in (1, 4)]
    for a, b in zip(jax.tree.leaves(results[0][0]), jax.tree.leaves(results[1][0])):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(results[1][0]["head"]["kernel"], params["head"]["kernel"])


def test_strided_microbatches_partition_the_batch():
    x = np.arange(24).reshape(12, 2)
    pieces = strided_microbatches({"x": x}, 3)
    np.testing.assert_array_equal(pieces[1]["x"], x[1::3])
    rows = np.concatenate([np.asarray(p["x"]) for p in pieces])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x))  # every example exactly once
    with pytest.raises(ValueError, match="num_microbatches=5"):
        strided_microbatches({"x": x}, 5)


def test_unrolled_microbatches_are_independent_parts_of_the_program():
    """No while loop (scan) in the compiled program, and k forward passes in it."""
    loss_fn, params, state, batch = mlp_problem()
    scan = jax.jit(accumulated_value_and_grad(loss_fn, 4)).lower(params, state, batch, None)
    unrolled = jax.jit(accumulated_value_and_grad(loss_fn, 4, unroll=True)).lower(
        params, state, batch, None)
    assert "while" in scan.as_text() and "while" not in unrolled.as_text()
    # The [8, 10] x [10, 16] first-layer product appears once per microbatch.
    assert unrolled.as_text().count("tensor<8x10xf32>, tensor<10x16xf32>") >= 4
