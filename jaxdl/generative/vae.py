"""Variational autoencoder (Kingma & Welling, 2014, arXiv:1312.6114).

An MLP encoder gives ``q(z|x) = N(mu, diag(exp(log_var)))``, a latent is drawn by the
reparameterization ``z = mu + exp(log_var / 2) * eps`` (``eps ~ N(0, I)``) so gradients flow
through the sample, and an MLP decoder gives Bernoulli logits for each pixel. The training
objective is the evidence lower bound::

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))  <=  log p(x)

with a one-sample reparameterized reconstruction term and the closed-form Gaussian KL.
Pixels in ``[0, 1]`` (grayscale digits) are used directly as Bernoulli targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.registry import ConfigError


class VAEOutput(NamedTuple):
    logits: jax.Array  # [batch, *input_shape] Bernoulli logits of the reconstruction
    mean: jax.Array  # [batch, latent]
    log_var: jax.Array  # [batch, latent]


class VAE(nnx.Module):
    """``x: [batch, *input_shape]`` in ``[0, 1]`` -> :class:`VAEOutput`.

    Follows the model convention ``module(x, *, train, rngs)``: ``rngs`` draws the latent
    noise; without ``rngs`` (evaluation) the decoder reads the posterior mean.
    """

    def __init__(self, input_shape: Sequence[int], latent: int = 8,
                 hidden: Sequence[int] = (256,), *, rngs: nnx.Rngs):
        if not isinstance(latent, int) or latent < 1:
            raise ConfigError(f"model.latent={latent!r}: expected an integer >= 1.")
        self.input_shape = tuple(input_shape)
        size = 1
        for d in self.input_shape:
            size *= d
        enc = (size, *hidden)
        self.encoder = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(enc[:-1], enc[1:])])
        self.to_stats = nnx.Linear(enc[-1], 2 * latent, rngs=rngs)
        dec = (latent, *reversed(tuple(hidden)))
        self.decoder = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dec[:-1], dec[1:])])
        self.to_logits = nnx.Linear(dec[-1], size, rngs=rngs)
        self.latent = latent

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = x.reshape(x.shape[0], -1)
        for layer in self.encoder:
            h = jax.nn.relu(layer(h))
        mean, log_var = jnp.split(self.to_stats(h), 2, axis=-1)
        return mean, log_var

    def decode(self, z: jax.Array) -> jax.Array:
        """``z: [batch, latent]`` -> Bernoulli logits ``[batch, *input_shape]``."""
        h = z
        for layer in self.decoder:
            h = jax.nn.relu(layer(h))
        return self.to_logits(h).reshape(z.shape[0], *self.input_shape)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
                 ) -> VAEOutput:
        del train
        mean, log_var = self.encode(x)
        z = mean
        if rngs is not None:
            z = reparameterize(mean, log_var, rngs.noise())
        return VAEOutput(self.decode(z), mean, log_var)


def reparameterize(mean: jax.Array, log_var: jax.Array, key: jax.Array) -> jax.Array:
    """``mean + exp(log_var / 2) * eps`` with ``eps ~ N(0, I)``."""
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Closed-form ``KL(N(mean, exp(log_var)) || N(0, I))`` per example; ``[batch]``."""
    return 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
    """``sum_pixels log p(x|logits)`` per example; ``[batch]``."""
    per_pixel = -optax.sigmoid_binary_cross_entropy(logits, x)
    return per_pixel.reshape(per_pixel.shape[0], -1).sum(-1)


def elbo(output: VAEOutput, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(elbo, reconstruction, kl)`` per example (nats), from a sampled forward pass."""
    reconstruction = bernoulli_log_likelihood(output.logits, x)
    kl = gaussian_kl(output.mean, output.log_var)
    return reconstruction - kl, reconstruction, kl
