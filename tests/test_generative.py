"""VAE: closed-form KL vs Monte Carlo, ELBO vs a numpy computation; DDPM: forward-process
moments, samplers exact on Gaussian data, DDIM(eta=1, all steps) == DDPM given the noise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.generative import diffusion
from jaxdl.generative.vae import VAE, elbo, gaussian_kl


def test_gaussian_kl_matches_monte_carlo():
    key = jax.random.key(0)
    mean = jnp.array([[0.5, -1.0, 0.0]])
    log_var = jnp.array([[-0.5, 0.3, 1.0]])
    n = 200_000
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, (n, 3))
    log_q = -0.5 * jnp.sum((z - mean) ** 2 / jnp.exp(log_var) + log_var, axis=-1)
    log_p = -0.5 * jnp.sum(z**2, axis=-1)  # the 2*pi terms cancel
    mc = float(jnp.mean(log_q - log_p))
    closed = float(gaussian_kl(mean, log_var)[0])
    assert abs(mc - closed) < 0.02, (mc, closed)
    assert float(gaussian_kl(jnp.zeros((1, 4)), jnp.zeros((1, 4)))[0]) == 0.0


def test_vae_elbo_matches_numpy_and_sampling_uses_the_rng():
    graphdef, params, state = functional.split_model(VAE((4, 4, 1), 3, (8,), rngs=nnx.Rngs(0)))
    x = jax.random.uniform(jax.random.key(1), (5, 4, 4, 1))
    apply = jax.jit(lambda x, rng: functional.apply(graphdef, params, state, x, train=True,
                                                    rng=rng)[0])
    out, _ = jax.jit(functional.apply, static_argnums=0)(graphdef, params, state, x)  # z = mean
    value, recon, kl = elbo(out, x)
    logits = np.asarray(out.logits, np.float64).reshape(5, -1)
    xs = np.asarray(x, np.float64).reshape(5, -1)
    log_lik = (xs * -np.logaddexp(0, -logits) + (1 - xs) * -np.logaddexp(0, logits)).sum(-1)
    mu, lv = np.asarray(out.mean, np.float64), np.asarray(out.log_var, np.float64)
    kl_np = 0.5 * (np.exp(lv) + mu**2 - 1 - lv).sum(-1)
    np.testing.assert_allclose(recon, log_lik, rtol=1e-5)
    np.testing.assert_allclose(value, log_lik - kl_np, rtol=1e-5)
    sampled, again = apply(x, jax.random.key(2)), apply(x, jax.random.key(2))
    np.testing.assert_array_equal(sampled.logits, again.logits)  # the key fixes the draw
    assert float(jnp.max(jnp.abs(sampled.logits - out.logits))) > 1e-4


def test_forward_process_moments_match_the_markov_chain():
    schedule = diffusion.linear_schedule(50, 1e-3, 0.1)
    rng = np.random.default_rng(0)
    x0 = np.array([1.5, -0.5, 0.0])
    n = 20_000
    x = np.broadcast_to(x0, (n, 3)).copy()
    betas = np.asarray(schedule.betas, np.float64)
    for t in range(1, 51):  # x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps
        x = np.sqrt(1 - betas[t]) * x + np.sqrt(betas[t]) * rng.normal(size=x.shape)
        if t in (10, 50):
            abar = float(schedule.alpha_bars[t])
            np.testing.assert_allclose(x.mean(0), np.sqrt(abar) * x0, atol=0.03)
            np.testing.assert_allclose(x.var(0), 1 - abar, rtol=0.05)
            xt = diffusion.q_sample(schedule, jnp.broadcast_to(x0, (n, 3)),
                                    jnp.full((n,), t), jax.random.normal(jax.random.key(t),
                                                                         (n, 3)))
            np.testing.assert_allclose(np.asarray(xt).mean(0), np.sqrt(abar) * x0, atol=0.03)
            np.testing.assert_allclose(np.asarray(xt).var(0), 1 - abar, rtol=0.05)


def _gaussian_eps(schedule, m, s):
    """The exact noise predictor E[eps | x_t] when the data are N(m, s^2)."""
    def eps_fn(x, t):
        abar = schedule.alpha_bars[t][:, None]
        return jnp.sqrt(1 - abar) * (x - jnp.sqrt(abar) * m) / (abar * s**2 + 1 - abar)
    return eps_fn


def test_samplers_recover_gaussian_data_and_ddim_eta1_equals_ddpm():
    schedule = diffusion.linear_schedule(100, 1e-4, 0.1)
    m, s = 0.5, 0.3
    eps_fn = _gaussian_eps(schedule, m, s)
    key = jax.random.key(0)
    shape = (4000, 1)

    @jax.jit
    def run(key):
        return {
            "ddpm": diffusion.sample(eps_fn, schedule, shape, key, method="ddpm", clip=None),
            "ddim_eta1_full": diffusion.sample(eps_fn, schedule, shape, key, eta=1.0,
                                               clip=None),
            "ddim_eta0_full": diffusion.sample(eps_fn, schedule, shape, key, eta=0.0,
                                               clip=None),
        }, diffusion.sample(eps_fn, schedule, shape, key, sampling_steps=10, eta=0.0, clip=None)

    out, coarse = run(key)
    np.testing.assert_allclose(out["ddim_eta1_full"], out["ddpm"], atol=1e-3)  # f32, 100 steps
    for name, x in out.items():
        assert abs(float(x.mean()) - m) < 0.03, name
        assert abs(float(x.std()) - s) < 0.03, name
    # Ten deterministic steps shrink the spread (discretization error, measured std 0.215).
    assert abs(float(coarse.std()) - s) > 2 * abs(float(out["ddim_eta0_full"].std()) - s)
    # Per step, over every t: the eta=1 DDIM step is the DDPM posterior step.
    t = jnp.arange(1, 101)
    x, eps, z = (jax.random.normal(k, (100, 2)) for k in jax.random.split(key, 3))
    np.testing.assert_allclose(diffusion.ddim_step(schedule, x, t, t - 1, eps, z, 1.0),
                               diffusion.ddpm_step(schedule, x, t, eps, z), atol=1e-4)


def test_sampler_rejects_bad_settings():
    schedule = diffusion.linear_schedule(10)
    with pytest.raises(ValueError, match="diffusion.sampling_steps"):
        diffusion.sample(lambda x, t: x, schedule, (2, 1), jax.random.key(0), sampling_steps=11)
    with pytest.raises(ValueError, match="diffusion.method"):
        diffusion.sample(lambda x, t: x, schedule, (2, 1), jax.random.key(0), method="euler")
    with pytest.raises(ValueError, match="diffusion.num_steps"):
        diffusion.linear_schedule(1)
