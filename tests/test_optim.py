"""Optimizers and schedules built from config sections."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.optim import build_optimizer, decay_mask, make_schedule
from jaxdl.registry import ConfigError


def test_warmup_cosine_closed_form():
    schedule = make_schedule("warmup_cosine", 1.0, 100, warmup_steps=10, final_fraction=0.1)
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    # halfway through the decay: final + (peak - final) * (1 + cos(pi/2)) / 2
    assert float(schedule(55)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)
    assert float(schedule(100)) == pytest.approx(0.1)


def test_sgd_momentum_matches_hand_rolled():
    tx, _ = build_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, 10)
    params = {"w": jnp.array([1.0, -2.0])}
    state = tx.init(params)
    grads = [jnp.array([0.5, 1.0]), jnp.array([-1.0, 0.25])]
    w, velocity = np.array([1.0, -2.0]), np.zeros(2)
    for g in grads:
        updates, state = tx.update({"w": g}, state, params)
        params = optax.apply_updates(params, updates)
        velocity = 0.9 * velocity + np.asarray(g)
        w = w - 0.1 * velocity
    np.testing.assert_allclose(params["w"], w, rtol=1e-6)


def test_decay_mask_of_layer_stacked_params_goes_by_name():
    """A scanned model stacks biases and norm scales to ``[layers, d]``: still no decay."""
    stacked = {"blocks": {"mlp": {"kernel": jnp.ones((3, 4, 4)), "bias": jnp.ones((3, 4))},
                          "norm": {"scale": jnp.ones((3, 4))}},
               "embed": {"embedding": jnp.ones((5, 4))}, "w": jnp.ones((2, 2)),
               "v": jnp.ones((2,))}
    assert decay_mask(stacked) == {
        "blocks": {"mlp": {"kernel": True, "bias": False}, "norm": {"scale": False}},
        "embed": {"embedding": True}, "w": True, "v": False}


def test_adamw_skips_decay_on_biases():
    tx, _ = build_optimizer({"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.5}, 10)
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    assert decay_mask(params) == {"kernel": True, "bias": False}
    zero = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros((2,))}
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["bias"], 0.0)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)


def test_clip_norm_chains_before_the_optimizer():
    tx, _ = build_optimizer({"name": "sgd", "learning_rate": 1.0, "clip_norm": 1.0}, 10)
    params = {"w": jnp.zeros(2)}
    updates, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize(
    "section, fragment",
    [
        ({"name": "sgd", "learning_rate": -1.0}, "optimizer.learning_rate=-1.0"),
        ({"name": "sgd", "learning_rate": 0.1, "moment": 0.9}, "Did you mean 'momentum'"),
        ({"name": "sgd", "learning_rate": 0.1, "schedule": "zigzag"}, "optimizer.schedule"),
        ({"name": "sgd", "learning_rate": 0.1, "schedule": "warmup_cosine",
          "warmup_steps": 50}, "optimizer.warmup_steps=50"),
        ({"learning_rate": 0.1}, "optimizer.name is missing"),
    ],
)
def test_bad_sections_are_named(section, fragment):
    with pytest.raises(ConfigError) as info:
        build_optimizer(section, 20)
    assert fragment in str(info.value)
