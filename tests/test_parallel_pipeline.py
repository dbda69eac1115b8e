"""Pipeline parallelism (GPipe, 1F1B) on 4 simulated stages against the unpipelined model.

Tolerance: float32 throughout; pipelined and single-device results differ only in the order
of sums (microbatch gradients are accumulated per stage), so we require agreement to 1e-5
relative to each array's largest entry (observed ~1e-6).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models.transformer_models import GPT
from jaxdl.parallel.mesh import make_mesh_for
from jaxdl.parallel.pipeline import (
    PipelineParts,
    check_config,
    make_pipeline_train_step,
    make_stage_mesh,
    pipeline_loss_and_grads,
)
from jaxdl.parallel.pipeline_gpt import gpt_pipeline_parts
from jaxdl.parallel.pipeline_schedules import (
    BACKWARD,
    FORWARD,
    IDLE,
    bubble_theory,
    build_schedule,
    lockstep_bubble,
)
from jaxdl.registry import ConfigError

RTOL = 1e-5


def assert_trees_close(actual, expected, rtol=RTOL):
    """Max |actual - expected| <= rtol * max |expected|, leaf by leaf (in numpy: no compiles)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        assert np.max(np.abs(a - e)) <= rtol * (np.max(np.abs(e)) + 1e-12)


def mlp_parts_and_params(num_layers=8, width=16, classes=5, seed=0):
    """Residual MLP blocks ``h + W2 tanh(W1 h + b1)`` between a linear embed and a softmax head."""
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape, np.float32)  # noqa: E731
    params = {
        "embed": {"w": normal(6, width) / np.sqrt(6)},
        "layers": {"w1": normal(num_layers, width, width) / np.sqrt(width),
                   "b1": np.full((num_layers, width), 0.1, np.float32),
                   "w2": normal(num_layers, width, width) / width},
        "head": {"w": normal(width, classes) / np.sqrt(width)},
    }

    def head_loss(p, h, y):
        return optax.softmax_cross_entropy_with_integer_labels(h @ p["w"], y).mean()

    parts = PipelineParts(
        embed=lambda p, x: x @ p["w"],
        layer=lambda p, h: h + jnp.tanh(h @ p["w1"] + p["b1"]) @ p["w2"],
        head_loss=head_loss)
    return parts, params


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("stages,microbatches", [(4, 4), (4, 8), (8, 3), (2, 5)])
def test_schedule_table_bubble_and_stash(name, stages, microbatches):
    schedule = build_schedule(name, stages, microbatches)
    table = schedule.table
    # Every stage runs each forward and each backward exactly once, after its inputs arrived.
    tick_of = {}
    for t, s in np.ndindex(table.shape[:2]):
        kind, m = table[t, s]
        if kind != IDLE:
            assert (kind, s, m) not in tick_of
            tick_of[(kind, s, m)] = t
    assert len(tick_of) == 2 * stages * microbatches
    for (kind, s, m), t in tick_of.items():
        if kind == FORWARD and s > 0:
            assert tick_of[(FORWARD, s - 1, m)] < t
        if kind == BACKWARD:
            assert tick_of[(FORWARD, s, m)] < t
            assert s == stages - 1 or tick_of[(BACKWARD, s + 1, m)] < t
    # Bubble counted from the table: 2(S-1) idle ticks of 2(M+S-1) on every stage.
    assert schedule.num_ticks == 2 * (microbatches + stages - 1)
    idle_per_stage = (table[:, :, 0] == IDLE).sum(axis=0)
    np.testing.assert_array_equal(idle_per_stage, 2 * (stages - 1))
    assert schedule.bubble_fraction() == pytest.approx(bubble_theory(stages, microbatches))
    # Activation stash: GPipe keeps all M inputs, 1F1B at most S (stage s: S - s, stage 1: S).
    if name == "gpipe":
        assert schedule.stash_slots == microbatches
        np.testing.assert_array_equal(schedule.peak_stash, microbatches)
    else:
        assert schedule.stash_slots <= stages and schedule.peak_stash.max() <= stages
        expected = [min(stages - max(s - 1, 0), microbatches) for s in range(stages)]
        np.testing.assert_array_equal(schedule.peak_stash, expected)


def test_lockstep_bubble_closed_form():
    """S = 2, M = 2, backward twice a forward, by hand: 1F1B ticks cost 1,1,2,2,2,2 (a
    forward tick shared with a backward lasts 2), GPipe 1,1,1,2,2,2; work 2 (1 + 2) = 6."""
    one_f_one_b, gpipe = build_schedule("1f1b", 2, 2), build_schedule("gpipe", 2, 2)
    assert lockstep_bubble(one_f_one_b, 1.0, 2.0) == pytest.approx(1 - 6 / 10)
    assert lockstep_bubble(gpipe, 1.0, 2.0) == pytest.approx(1 - 6 / 9)
    for schedule in (one_f_one_b, gpipe, build_schedule("1f1b", 4, 8)):
        assert lockstep_bubble(schedule, 1.0, 1.0) == pytest.approx(
            schedule.bubble_fraction())


def test_1f1b_and_gpipe_gpt_match_single_device():
    """A 4-layer scanned GPT on 4 stages x 4 microbatches: loss and every gradient."""
    abstract = nnx.eval_shape(lambda: GPT(16, 8, d_model=16, num_layers=4, num_heads=2,
                                          scan_layers=True, rngs=nnx.Rngs(0)))
    graphdef, shapes, state = functional.split_model(abstract)
    rng = np.random.default_rng(0)  # random values everywhere (no init to compile)
    model = functional.merge_model(graphdef, jax.tree.map(
        lambda a: 0.3 * rng.standard_normal(a.shape, np.float32), shapes), state)
    parts, params = gpt_pipeline_parts(model)
    tokens = np.random.default_rng(1).integers(0, 16, (8, 9), np.int32)
    x, y = tokens[:, :-1], tokens[:, 1:]
    graphdef, all_params, state = functional.split_model(model)

    def full_model_loss(p):  # the library's own GPT forward, unpipelined
        logits, _ = functional.apply(graphdef, p, state, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    ref_loss, ref_grads = jax.jit(jax.value_and_grad(parts.reference_loss))(params, x, y)
    assert float(ref_loss) == pytest.approx(float(jax.jit(full_model_loss)(all_params)),
                                            rel=1e-6)
    mesh = make_stage_mesh(4)
    schedules = {name: build_schedule(name, 4, 4) for name in ("gpipe", "1f1b")}

    @jax.jit
    def both(p):
        return {name: pipeline_loss_and_grads(parts, p, x, y, mesh=mesh, schedule=sch)
                for name, sch in schedules.items()}

    for name, (loss, grads) in both(params).items():
        assert float(loss) == pytest.approx(float(ref_loss), rel=RTOL), name
        assert_trees_close(grads, ref_grads)
    # gradients are sharded by stage: each device holds one layer of the stack
    assert grads["layers"]["mlp_in"]["kernel"].sharding.spec[0] == "stage"


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_train_step_matches_single_device_after_adam_steps(name):
    """GPipe on a 1-D stage mesh, 1F1B on the ``pp`` preset's (data=1, stage=4) mesh."""
    parts, params = mlp_parts_and_params()
    mesh = make_stage_mesh(4) if name == "gpipe" else make_mesh_for("pp", 4)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 6), np.float32)
    y = rng.integers(0, 5, (12,), np.int32)
    optimizer = optax.adam(3e-2)
    step = make_pipeline_train_step(parts, optimizer, mesh=mesh,
                                    schedule=name, num_microbatches=6)

    @jax.jit
    def reference_step(p, o):
        loss, grads = jax.value_and_grad(parts.reference_loss)(p, x, y)
        updates, o = optimizer.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    p_pipe = p_ref = params
    o_pipe = o_ref = jax.jit(optimizer.init)(params)
    losses = []
    for _ in range(4):
        p_pipe, o_pipe, loss = step(p_pipe, o_pipe, x, y)
        p_ref, o_ref, ref_loss = reference_step(p_ref, o_ref)
        assert float(loss) == pytest.approx(float(ref_loss), rel=RTOL)
        losses.append(float(loss))
    assert_trees_close(p_pipe, p_ref, rtol=1e-4)  # Adam divides by sqrt(v): looser
    assert losses[-1] < losses[0]  # and it trains


def test_bad_config_raises_before_compiling():
    parts, params = mlp_parts_and_params(num_layers=8)
    mesh = make_stage_mesh(4)
    x, y = np.zeros((12, 6), np.float32), np.zeros((12,), np.int32)
    with pytest.raises(ConfigError, match=r"pipeline.microbatches=5: expected a divisor"):
        pipeline_loss_and_grads(parts, params, x, y, mesh=mesh,
                                schedule=build_schedule("1f1b", 4, 5))
    with pytest.raises(ConfigError, match=r"pipeline.stages=2: expected the size of mesh axis"):
        check_config(mesh, build_schedule("gpipe", 2, 4), 8, 12)
    with pytest.raises(ConfigError, match=r"model.num_layers=6: expected a multiple of"):
        check_config(mesh, build_schedule("gpipe", 4, 4), 6, 12)
    with pytest.raises(ConfigError, match=r"pipeline.schedule='interleaved'"):
        build_schedule("interleaved", 4, 4)
    with pytest.raises(ConfigError, match=r"pipeline.microbatches=0"):
        build_schedule("gpipe", 4, 0)
    with pytest.raises(ConfigError, match=r"pipeline.stages=9"):
        make_stage_mesh(9)
