"""Denoising diffusion: DDPM training and ancestral sampling (Ho, Jain & Abbeel, 2020,
arXiv:2006.11239) and DDIM sampling on a sub-sequence of steps (Song, Meng & Ermon, 2021,
arXiv:2010.02502).

Forward process: ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` with
``abar_t = prod_{s<=t} (1 - beta_s)``, ``t = 1..T``. The network predicts the noise ``eps``
from ``(x_t, t)`` and is trained with the simple loss ``|eps - eps_theta(x_t, t)|^2``.

Sampling, with ``x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)`` (optionally
clipped to the data range, ``eps_hat`` then recomputed from it):

* DDPM: ``x_{t-1} ~ N(mu_t(x_t, x0_hat), sigma_t^2)`` with the posterior variance
  ``beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)``.
* DDIM from step ``t`` to an earlier ``s``: ``x_s = sqrt(abar_s) x0_hat
  + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z`` with
  ``sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)``. ``eta = 0``
  is deterministic; ``eta = 1`` with ``s = t - 1`` is exactly the DDPM step above.

Arrays: ``x: [batch, ...]`` (any data shape), ``t: [batch]`` integers in ``1..T``.
Index 0 of the schedule arrays is ``t = 0`` (``abar_0 = 1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.registry import ConfigError

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t [b, ...], t [b]) -> eps [b, ...]


class Schedule(NamedTuple):
    betas: jax.Array  # [T + 1], betas[0] = 0
    alpha_bars: jax.Array  # [T + 1], alpha_bars[0] = 1
    noise_vars: jax.Array  # [T + 1], 1 - alpha_bars computed in float64 (no cancellation)

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0] - 1


def linear_schedule(num_steps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> Schedule:
    """Ho et al.'s linear ``beta`` schedule, ``beta_1 = beta_start`` ... ``beta_T = beta_end``."""
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ConfigError(f"diffusion.num_steps={num_steps!r}: expected an integer >= 2.")
    if not 0 < beta_start <= beta_end < 1:
        raise ConfigError(f"diffusion.beta_start={beta_start}, beta_end={beta_end}: expected "
                         "0 < beta_start <= beta_end < 1.")
    betas = np.concatenate([[0.0], np.linspace(beta_start, beta_end, num_steps)])
    log_alpha_bars = np.cumsum(np.log1p(-betas))
    return Schedule(*(jnp.asarray(a, jnp.float32) for a in
                      (betas, np.exp(log_alpha_bars), -np.expm1(log_alpha_bars))))


def _bcast(values: jax.Array, x: jax.Array) -> jax.Array:
    return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """A draw of ``x_t ~ q(x_t | x_0)`` given standard-normal ``noise`` (shape of ``x0``)."""
    abar, var = (_bcast(a[t], x0) for a in (schedule.alpha_bars, schedule.noise_vars))
    return jnp.sqrt(abar) * x0 + jnp.sqrt(var) * noise


def ddpm_loss(eps_fn: EpsFn, schedule: Schedule, x0: jax.Array, key: jax.Array) -> jax.Array:
    """Ho et al.'s simple loss: mean ``|eps - eps_fn(x_t, t)|^2``, ``t ~ U{1..T}``."""
    k_t, k_eps = jax.random.split(key)
    t = jax.random.randint(k_t, (x0.shape[0],), 1, schedule.num_steps + 1)
    noise = jax.random.normal(k_eps, x0.shape, x0.dtype)
    return jnp.mean((eps_fn(q_sample(schedule, x0, t, noise), t) - noise) ** 2)


def _denoise(schedule, x, t, eps, clip):
    abar, var = (_bcast(a[t], x) for a in (schedule.alpha_bars, schedule.noise_vars))
    x0 = (x - jnp.sqrt(var) * eps) / jnp.sqrt(abar)
    if clip is not None:
        x0 = jnp.clip(x0, -clip, clip)
        eps = (x - jnp.sqrt(abar) * x0) / jnp.sqrt(var)
    return x0, eps


def ddpm_step(schedule: Schedule, x: jax.Array, t: jax.Array, eps: jax.Array, z: jax.Array,
              clip: float | None = 1.0) -> jax.Array:
    """One ancestral step ``x_t -> x_{t-1}`` (posterior mean + ``sqrt(beta_tilde) z``)."""
    x0, _ = _denoise(schedule, x, t, eps, clip)
    abar_prev = _bcast(schedule.alpha_bars[t - 1], x)
    var_t, var_prev = (_bcast(schedule.noise_vars[i], x) for i in (t, t - 1))
    beta = _bcast(schedule.betas[t], x)
    mean = (jnp.sqrt(abar_prev) * beta / var_t * x0
            + jnp.sqrt(1 - beta) * var_prev / var_t * x)
    variance = beta * var_prev / var_t
    return mean + jnp.sqrt(variance) * z


def ddim_step(schedule: Schedule, x: jax.Array, t: jax.Array, s: jax.Array, eps: jax.Array,
              z: jax.Array, eta: float, clip: float | None = 1.0) -> jax.Array:
    """One generalized step ``x_t -> x_s`` (``s < t``; ``s = 0`` returns ``x0_hat``)."""
    x0, eps = _denoise(schedule, x, t, eps, clip)
    abar_s = _bcast(schedule.alpha_bars[s], x)
    var_t, var_s = (_bcast(schedule.noise_vars[i], x) for i in (t, s))
    # 1 - abar_t / abar_s = (var_t - var_s) / abar_s, without cancellation near t = 1
    sigma = eta * jnp.sqrt(var_s / var_t * (var_t - var_s) / abar_s)
    direction = jnp.sqrt(jnp.maximum(var_s - sigma**2, 0.0))
    return jnp.sqrt(abar_s) * x0 + direction * eps + sigma * z


def step_sequence(num_steps: int, sampling_steps: int) -> jax.Array:
    """``sampling_steps`` evenly spaced timesteps from ``T`` down to 1 (DDIM's sub-sequence)."""
    if not isinstance(sampling_steps, int) or not 1 <= sampling_steps <= num_steps:
        raise ConfigError(f"diffusion.sampling_steps={sampling_steps!r}: expected an integer "
                         f"in [1, {num_steps}].")
    steps = jnp.round(jnp.linspace(num_steps, 1, sampling_steps)).astype(jnp.int32)
    return steps


def sample(eps_fn: EpsFn, schedule: Schedule, shape: tuple[int, ...], key: jax.Array, *,
           sampling_steps: int | None = None, eta: float = 1.0, method: str = "ddim",
           clip: float | None = 1.0) -> jax.Array:
    """Samples ``[*shape]`` from ``x_T ~ N(0, I)``.

    ``method="ddpm"``: ancestral sampling over all ``T`` steps. ``method="ddim"``: the
    sub-sequence :func:`step_sequence` (``sampling_steps``, default ``T``) with ``eta``.
    Step ``i`` uses noise ``fold_in(key, i)`` (``i = 0`` draws ``x_T``), so DDIM with
    ``eta = 1`` on all ``T`` steps reproduces DDPM given the same key. Jit the caller.
    """
    if method not in ("ddpm", "ddim"):
        raise ConfigError(f"diffusion.method={method!r}: expected 'ddpm' or 'ddim'.")
    if eta < 0:
        raise ConfigError(f"diffusion.eta={eta!r}: expected eta >= 0.")
    T = schedule.num_steps
    steps = step_sequence(T, T if method == "ddpm" or sampling_steps is None else sampling_steps)
    nexts = jnp.concatenate([steps[1:], jnp.zeros(1, jnp.int32)])
    x = jax.random.normal(jax.random.fold_in(key, 0), shape)
    batch = shape[0]

    def body(x, inputs):
        i, t, s = inputs
        z = jax.random.normal(jax.random.fold_in(key, i), shape)
        z = jnp.where(s > 0, z, 0.0)  # no noise on the last step
        tb, sb = jnp.full((batch,), t), jnp.full((batch,), s)
        eps = eps_fn(x, tb)
        if method == "ddpm":
            x = ddpm_step(schedule, x, tb, eps, z, clip)
        else:
            x = ddim_step(schedule, x, tb, sb, eps, z, eta, clip)
        return x, None

    index = jnp.arange(1, steps.shape[0] + 1)
    x, _ = jax.lax.scan(body, x, (index, steps, nexts))
    return x


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal embedding of integer timesteps (Vaswani et al., 2017); ``[b] -> [b, dim]``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / half)
    angles = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class EpsilonMLP(nnx.Module):
    """Noise predictor ``(x_t: [b, *shape], t: [b]) -> eps: [b, *shape]``: an MLP on the
    flattened input plus a learned projection of the time embedding added to each hidden
    layer (SiLU activations)."""

    def __init__(self, input_shape, hidden: int = 256, num_layers: int = 3,
                 time_dim: int = 64, *, rngs: nnx.Rngs):
        self.input_shape = tuple(input_shape)
        size = math.prod(self.input_shape)
        self.time_dim = time_dim
        self.time = nnx.Linear(time_dim, hidden, rngs=rngs)
        dims = (size, *([hidden] * num_layers))
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.time_proj = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs)
                                   for _ in range(num_layers)])
        self.out = nnx.Linear(hidden, size, rngs=rngs,
                              kernel_init=nnx.initializers.zeros_init())

    def __call__(self, inputs, *, train: bool = False, rngs: nnx.Rngs | None = None):
        """``inputs = (x_t, t)`` (the functional model convention takes one input)."""
        del train, rngs
        x, t = inputs
        temb = jax.nn.silu(self.time(timestep_embedding(t, self.time_dim)))
        h = x.reshape(x.shape[0], -1)
        for layer, proj in zip(self.layers, self.time_proj):
            h = jax.nn.silu(layer(h) + proj(temb))
        return self.out(h).reshape(x.shape)
