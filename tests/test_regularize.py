"""Penalties, decoupled weight decay, mixup/cutmix, and the regularized classification
objective (one compiled step with every regularizer on)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models import MODELS
from jaxdl.regularize import (
    cutmix,
    decoupled_weight_decay,
    kernels_only,
    l1_penalty,
    l2_penalty,
    mixup,
)
from jaxdl.train.objectives import OBJECTIVES

PARAMS = {"dense": {"kernel": jnp.array([[1.0, -2.0], [3.0, 0.5]]),
                    "bias": jnp.array([4.0, 5.0])},
          "conv": {"kernel": jnp.full((3, 3, 1, 2), -0.5)}}


def test_penalties_match_numpy_and_skip_biases():
    sq = 1 + 4 + 9 + 0.25 + 18 * 0.25
    ab = 1 + 2 + 3 + 0.5 + 18 * 0.5
    np.testing.assert_allclose(l2_penalty(PARAMS, 0.1), 0.05 * sq, rtol=1e-6)
    np.testing.assert_allclose(l1_penalty(PARAMS, 0.1), 0.1 * ab, rtol=1e-6)
    grad = jax.grad(lambda p: l2_penalty(p, 0.1))(PARAMS)
    np.testing.assert_allclose(grad["dense"]["kernel"], 0.1 * PARAMS["dense"]["kernel"])
    np.testing.assert_array_equal(grad["dense"]["bias"], 0.0)
    assert kernels_only(PARAMS)["dense"]["bias"] is False


def test_decoupled_weight_decay_chain_equals_optax_adamw():
    lr, wd = 0.01, 0.1
    ours = optax.chain(optax.scale_by_adam(), optax.scale(-lr),
                       decoupled_weight_decay(wd, lr, mask=lambda p: jax.tree.map(
                           lambda _: True, p)))
    ref = optax.adamw(lr, weight_decay=wd)
    p1 = p2 = PARAMS
    s1, s2 = ours.init(p1), ref.init(p2)
    for i in range(3):
        g = jax.tree.map(lambda x, i=i: jnp.sin(x + i), PARAMS)
        u1, s1 = ours.update(g, s1, p1)
        u2, s2 = ref.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_mixup_mixes_inputs_and_targets_with_the_same_weight():
    targets = jax.nn.one_hot(jnp.arange(8) % 4, 4)
    x, t = mixup(jax.random.key(0), targets, targets, 0.4)
    np.testing.assert_allclose(x, t, rtol=1e-6)  # inputs == targets here, so mixes must match
    np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-6)
    assert not np.allclose(t, targets)


def test_cutmix_target_weights_equal_pasted_area():
    b = 6
    x = jnp.broadcast_to(jnp.arange(b, dtype=jnp.float32)[:, None, None, None], (b, 10, 10, 1))
    targets = jax.nn.one_hot(jnp.arange(b), b)
    for seed in range(3):
        mixed, t = cutmix(jax.random.key(seed), x, targets, 1.0)
        own = np.asarray(mixed[..., 0]) == np.arange(b)[:, None, None]
        np.testing.assert_allclose(np.diag(np.asarray(t)), own.mean((1, 2)), rtol=1e-6)
        np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-6)


def _objective_and_model(**options):
    model = MODELS.build({"name": "cnn", "features": (4,), "hidden": 8}, field="model",
                         input_shape=(8, 8, 1), num_classes=3, rngs=nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    objective = OBJECTIVES.build({"name": "classification", **options}, field="loss",
                                 graphdef=graphdef)
    return objective, params, state


BATCH = {"x": jax.random.uniform(jax.random.key(0), (8, 8, 8, 1)), "y": jnp.arange(8) % 3}


def test_l2_option_adds_exactly_the_penalty_to_the_loss():
    plain, params, state = _objective_and_model()
    reg, _, _ = _objective_and_model(l2=0.01)
    rng = jax.random.key(1)
    base, _ = plain.loss(params, state, BATCH, rng)
    value, _ = reg.loss(params, state, BATCH, rng)
    np.testing.assert_allclose(value - base, l2_penalty(params, 0.01), rtol=1e-4)


def test_every_regularizer_in_one_compiled_step():
    objective, params, state = _objective_and_model(
        l1=1e-4, l2=1e-4, augment={"crop_padding": 1, "noise_std": 0.05},
        mixup_alpha=0.2, adversarial={"attack": "pgd", "epsilon": 0.1, "steps": 2},
        robust_eval={"fgsm": {"attack": "fgsm", "epsilon": 0.1}})

    @jax.jit
    def step(params, key):
        (value, (metrics, _)), grads = jax.value_and_grad(objective.loss, has_aux=True)(
            params, state, BATCH, key)
        return value, grads, objective.evaluate(params, state, {**BATCH,
                                                                "mask": jnp.ones(8)})

    value, grads, sums = step(params, jax.random.key(0))
    value2, _, _ = step(params, jax.random.key(0))
    assert np.isfinite(float(value)) and float(value) == float(value2)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert 0 <= float(sums["robust_accuracy_fgsm"]) <= 8


def test_bad_regularizer_options_fail_before_compilation():
    with pytest.raises(ValueError, match="loss.mixup_alpha and loss.cutmix_alpha"):
        _objective_and_model(mixup_alpha=0.2, cutmix_alpha=1.0)
    with pytest.raises(ValueError, match="loss.l2=-1"):
        _objective_and_model(l2=-1)
    with pytest.raises(ValueError, match="loss.robust_eval.x"):
        _objective_and_model(robust_eval={"x": 0.1})
