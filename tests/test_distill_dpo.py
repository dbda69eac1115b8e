"""Distillation loss vs a float64 numpy reference and its T -> inf limit; DPO loss vs a hand
computation and the sign of its gradient."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.adapt.distill import distillation_loss, logit_matching_limit, soft_kl
from jaxdl.adapt.dpo import dpo_loss, sequence_log_prob


def _np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_distillation_loss_matches_numpy_reference():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 3
    y = rng.integers(0, 5, size=6)
    temp, alpha = 3.0, 0.7
    lp, lq = _np_log_softmax(t / temp), _np_log_softmax(s / temp)
    soft = temp**2 * (np.exp(lp) * (lp - lq)).sum(-1).mean()
    hard = -_np_log_softmax(s)[np.arange(6), y].mean()
    expected = alpha * soft + (1 - alpha) * hard
    got = distillation_loss(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32),
                            jnp.asarray(y), temperature=temp, alpha=alpha)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # Teacher gets no gradient; the student's gradient vanishes when it equals the teacher.
    g_t = jax.grad(lambda t_: distillation_loss(jnp.asarray(s), t_, None, alpha=1.0))(
        jnp.asarray(t))
    assert float(jnp.abs(g_t).max()) == 0.0
    g_s = jax.grad(lambda s_: distillation_loss(s_, jnp.asarray(t), None, alpha=1.0))(
        jnp.asarray(t))
    assert float(jnp.abs(g_s).max()) < 1e-5


def test_high_temperature_limit_is_logit_matching():
    rng = np.random.default_rng(1)
    s = jnp.asarray(rng.normal(size=(8, 10)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(8, 10)), jnp.float32)
    limit = logit_matching_limit(s, t)
    errors = [float(jnp.max(jnp.abs(soft_kl(s, t, temp) / limit - 1))) for temp in (3.0, 30.0)]
    assert errors[1] < 0.03, errors  # relative error of order 1/T
    assert errors[1] < errors[0] / 5  # shrinks ~10x for 10x the temperature


def test_distillation_rejects_bad_settings():
    z = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="distill.temperature"):
        distillation_loss(z, z, jnp.zeros(2, int), temperature=0.0)
    with pytest.raises(ValueError, match="distill.alpha"):
        distillation_loss(z, z, jnp.zeros(2, int), alpha=1.5)


def test_dpo_loss_by_hand_and_gradient_signs():
    pc, pr = jnp.array([-3.0, -5.0]), jnp.array([-4.0, -2.0])
    rc, rr = jnp.array([-3.5, -4.0]), jnp.array([-3.5, -3.0])
    beta = 0.5
    # pair 0: 0.5*((-3+3.5) - (-4+3.5)) = 0.5 ; pair 1: 0.5*((-5+4) - (-2+3)) = -1.0
    expected = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(1.0))) / 2
    out = dpo_loss(pc, pr, rc, rr, beta=beta)
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-6)
    np.testing.assert_allclose(out.margin, [0.5, -1.0], rtol=1e-6)
    assert float(out.accuracy) == 0.5
    grads = jax.grad(lambda a, b: dpo_loss(a, b, rc, rr, beta=beta).loss, argnums=(0, 1))(pc, pr)
    assert bool(jnp.all(grads[0] < 0)) and bool(jnp.all(grads[1] > 0))
    # d loss / d chosen_i = -beta * sigmoid(-margin_i) / n
    np.testing.assert_allclose(grads[0], -beta * jax.nn.sigmoid(-out.margin) / 2, rtol=1e-6)
    ref_grad = jax.grad(lambda c: dpo_loss(pc, pr, c, rr, beta=beta).loss)(rc)
    assert float(jnp.abs(ref_grad).max()) == 0.0  # the reference is frozen
    with pytest.raises(ValueError, match="dpo.beta"):
        dpo_loss(pc, pr, rc, rr, beta=0.0)


def test_sequence_log_prob_masks_prompt_tokens():
    logits = jnp.log(jnp.array([[[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]]))
    tokens = jnp.array([[0, 1, 0]])
    mask = jnp.array([[0.0, 1.0, 1.0]])
    np.testing.assert_allclose(sequence_log_prob(logits, tokens, mask),
                               [math.log(0.8) + math.log(0.9)], rtol=1e-6)


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    """An MLP fit long on 150 digits (no regularization) is over-confident on held-out data;
    a temperature fit on one held-out half lowers ECE and NLL on the other half."""
    import optax
    from flax import nnx

    from jaxdl import functional
    from jaxdl.data import load_dataset
    from jaxdl.eval import metrics
    from jaxdl.eval.calibration import fit_temperature
    from jaxdl.models.mlp import MLP

    ds = load_dataset("digits", eval_fraction=0.9)
    x, y = jnp.asarray(ds.train["x"][:150]), jnp.asarray(ds.train["y"][:150])
    graphdef, params, state = functional.split_model(MLP(64, 10, (128,), rngs=nnx.Rngs(0)))
    tx = optax.adam(1e-2)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, opt_state = carry
            grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
                functional.apply(graphdef, p, state, x)[0], y).mean())(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None
        return jax.lax.scan(step, (params, tx.init(params)), None, length=300)[0][0]

    params = train(params)
    logits = np.asarray(jax.jit(functional.apply, static_argnums=0)(
        graphdef, params, state, ds.eval["x"])[0], np.float64)
    labels = ds.eval["y"]
    half = len(labels) // 2
    fit = fit_temperature(logits[:half], labels[:half])
    probs = metrics.softmax(logits[half:])
    conf, acc = probs.max(-1).mean(), metrics.accuracy(logits[half:], labels[half:])
    assert conf > acc + 0.02  # deliberately over-confident
    assert fit.temperature > 1.2
    ece_before = metrics.expected_calibration_error(probs, labels[half:])
    ece_after = metrics.expected_calibration_error(
        metrics.softmax(logits[half:] / fit.temperature), labels[half:])
    assert ece_after < 0.7 * ece_before, (ece_before, ece_after)
