"""FGSM/PGD: perturbations stay in the epsilon ball and the data range, raise the loss, and
FGSM on a linear model matches its closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.regularize import adversarial

KEY = jax.random.key(0)
W = jax.random.normal(KEY, (12, 3))
X = jax.random.uniform(jax.random.key(1), (16, 12), minval=0.2, maxval=0.8)
Y = jnp.arange(16) % 3


def losses(x):
    h = jnp.tanh(x @ W)
    return optax.softmax_cross_entropy_with_integer_labels(h @ W.T @ W, Y)


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_perturbation_within_epsilon_and_range_and_raises_loss(name):
    eps = 0.05
    spec = adversarial.check_attack({"attack": name, "epsilon": eps, "steps": 8}, "test")
    x_adv = adversarial.attack(spec, losses, X, jax.random.key(2))
    assert float(jnp.abs(x_adv - X).max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert (losses(x_adv) > losses(X)).mean() > 0.9
    assert losses(x_adv).mean() > losses(X).mean() + 0.01


def test_pgd_is_at_least_as_strong_as_fgsm():
    fgsm = adversarial.fgsm(losses, X, 0.1)
    pgd = adversarial.pgd(losses, X, 0.1, steps=20, key=None)
    assert float(losses(pgd).mean()) >= float(losses(fgsm).mean()) - 1e-4


def test_fgsm_closed_form_for_a_linear_model():
    """For loss = -y * (w . x) the input gradient is -y w, so FGSM moves x by -eps y sign(w)."""
    w = jnp.array([0.5, -2.0, 1.0, -0.1])
    x = jnp.full((2, 4), 0.5)
    y = jnp.array([1.0, -1.0])
    out = adversarial.fgsm(lambda z: -y * (z @ w), x, 0.1)
    np.testing.assert_allclose(out, x - 0.1 * y[:, None] * jnp.sign(w), rtol=1e-6)


def test_clipping_to_data_range():
    x = jnp.zeros((2, 4))
    out = adversarial.fgsm(lambda z: -(z @ jnp.ones(4)), x, 0.3)  # gradient pushes below 0
    np.testing.assert_array_equal(out, 0.0)


def test_mix_adversarial_fraction():
    out = adversarial.mix_adversarial(jnp.zeros((8, 2)), jnp.ones((8, 2)), 0.25)
    np.testing.assert_array_equal(out[:2], 1.0)
    np.testing.assert_array_equal(out[2:], 0.0)


def test_bad_attack_specs():
    with pytest.raises(ValueError, match="loss.adversarial.attack='cw'"):
        adversarial.check_attack({"attack": "cw", "epsilon": 0.1}, "loss.adversarial")
    with pytest.raises(ValueError, match="epsilon"):
        adversarial.check_attack({"attack": "pgd", "epsilon": 0}, "loss.adversarial")
    with pytest.raises(ValueError, match="loss.adversarial.eps "):
        adversarial.check_attack({"attack": "pgd", "eps": 0.1}, "loss.adversarial")
