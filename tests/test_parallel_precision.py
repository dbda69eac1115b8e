"""Mixed-precision policies and dynamic loss scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.data.dataset import load_dataset
from jaxdl.models import MODELS
from jaxdl.parallel import precision
from jaxdl.registry import ConfigError
from jaxdl.train.objectives import classification
from tests.helpers import trees_equal


def digits_mlp(seed=0):
    data = load_dataset("digits")
    model = MODELS.build({"name": "mlp", "hidden": (64,)}, field="model",
                         input_shape=data.input_shape, num_classes=10, rngs=nnx.Rngs(seed))
    graphdef, params, state = functional.split_model(model)
    return classification(graphdef=graphdef).loss, params, state, data


def train(loss_fn, params, state, data, policy, steps, batch_size=64):
    tx = precision.make_optimizer(optax.adam(1e-2), policy)
    step = jax.jit(precision.policy_train_step(loss_fn, tx, policy))
    opt_state, losses = tx.init(params), []
    for i in range(steps):
        lo = (i * batch_size) % (len(data.train["y"]) - batch_size)
        batch = {k: v[lo: lo + batch_size] for k, v in data.train.items()}
        params, state, opt_state, metrics = step(params, state, opt_state, batch, None)
        losses.append(float(metrics["loss"]))
    return np.array(losses), step, params, opt_state, batch


def test_bf16_loss_curve_close_to_f32_and_compute_is_bf16():
    loss_fn, params, state, data = digits_mlp()
    f32, *_ = train(loss_fn, params, state, data, "f32", 30)
    bf16, step, _, opt_state, batch = train(loss_fn, params, state, data, "bf16", 30)
    assert f32[-1] < 0.5 * f32[0]  # it learns
    gap = np.abs(bf16 - f32)
    assert np.all(gap <= 0.02 + 0.02 * f32), f"bf16 vs f32 loss gap {gap.max():.4f}"
    hlo = step.lower(params, state, opt_state, batch, None).as_text()
    assert "bf16" in hlo and "dot_general" in hlo


def test_unscaled_f16_gradients_match_f32():
    loss_fn, params, state, data = digits_mlp()
    batch = {k: v[:64] for k, v in data.train.items()}
    (_, _), g32 = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, state, batch, None)
    scaled = precision.scaled_value_and_grad(precision.policy_loss(loss_fn, "f16"),
                                             jnp.asarray(1024.0))
    (_, _), g16 = jax.jit(scaled)(params, state, batch, None)
    for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g16)):
        assert b.dtype == jnp.float32  # gradients land on the float32 master weights
        np.testing.assert_allclose(b / 1024.0, a, atol=2e-3 * float(jnp.abs(a).max()) + 1e-5)


def test_injected_overflow_skips_the_step_and_the_run_recovers():
    loss_fn, params, state, data = digits_mlp()
    tx = precision.make_optimizer(optax.adam(3e-3), "f16", init_scale=2.0**10,
                                  growth_interval=3)
    step = jax.jit(precision.policy_train_step(loss_fn, tx, "f16"))
    opt_state = tx.init(params)
    batches = [{k: v[64 * i: 64 * i + 64] for k, v in data.train.items()} for i in range(12)]

    # Three finite steps: updates applied, then the scale grows x2.
    for batch in batches[:3]:
        new_params, state, opt_state, metrics = step(params, state, opt_state, batch, None)
        assert not trees_equal(new_params, params) and float(metrics["update_skipped"]) == 0
        params = new_params
    assert float(metrics["loss_scale"]) == 2.0**11

    # An input of 6e4 overflows float16 in the first matmul: the step must be skipped.
    bad = {"x": batches[3]["x"] * 0 + 6e4, "y": batches[3]["y"]}
    new_params, state, new_opt, metrics = step(params, state, opt_state, bad, None)
    assert float(metrics["update_skipped"]) == 1.0
    assert float(metrics["loss_scale"]) == 2.0**10
    assert trees_equal(new_params, params)
    assert trees_equal(precision.loss_scale_state(new_opt).inner_state,
                       precision.loss_scale_state(opt_state).inner_state)
    opt_state = new_opt

    # Recovery: finite steps resume, the loss keeps falling, the scale grows again.
    losses = []
    for batch in batches[4:]:
        params, state, opt_state, metrics = step(params, state, opt_state, batch, None)
        assert float(metrics["update_skipped"]) == 0
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert float(metrics["loss_scale"]) == 2.0**12  # 8 good steps: two growths of x2


def test_bad_policy_and_scaling_options_name_the_field():
    with pytest.raises(ConfigError, match=r"precision.policy='fp8'.*'f32', 'bf16', 'f16'"):
        precision.get_policy("fp8")
    with pytest.raises(ConfigError, match="precision.backoff_factor=1.5"):
        precision.dynamic_loss_scale(optax.sgd(0.1), backoff_factor=1.5)
    with pytest.raises(ConfigError, match="precision.growth_interval=0"):
        precision.dynamic_loss_scale(optax.sgd(0.1), growth_interval=0)
