"""Reconstruction objective: sigmoid cross-entropy summed over pixels, plus L2.

For grayscale targets ``x`` in [0, 1] and logits ``z`` (both ``[batch, ...]``):

    loss = mean_batch sum_pixels [softplus(z) - x z] + l2 / 2 * ||params||^2

(the negative log-likelihood of independent Bernoulli pixels with mean ``sigmoid(z)``;
Hinton & Salakhutdinov, 2006). The logits are registered as a Bernoulli output so K-FAC
samples its Fisher from the model's own distribution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl import functional
from jaxdl.optim.kfac import register_output
from jaxdl.train.objectives import OBJECTIVES, Objective


def reconstruction_error(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``[batch]`` sigmoid cross-entropy summed over every non-batch axis."""
    per_pixel = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32),
                                                   targets.astype(jnp.float32))
    return per_pixel.reshape(per_pixel.shape[0], -1).sum(axis=1)


@OBJECTIVES.register("sigmoid_reconstruction")
def sigmoid_reconstruction(*, graphdef: nnx.GraphDef, l2: float = 0.0) -> Objective:
    """Autoencoder objective on ``batch["x"]`` (labels ignored). Metrics: ``loss`` (with
    the L2 term: the training objective), ``reconstruction`` (without it)."""
    if l2 < 0:
        raise ValueError(f"loss.l2={l2}: expected >= 0.")

    def penalty(params):
        return 0.5 * l2 * sum(jnp.vdot(p, p) for p in jax.tree.leaves(params))

    def loss(params, model_state, batch, rng):
        logits, new_state = functional.apply(graphdef, params, model_state, batch["x"],
                                             train=True, rng=rng)
        error = reconstruction_error(register_output(logits, "bernoulli"), batch["x"]).mean()
        return error + penalty(params), ({"reconstruction": error}, new_state)

    def evaluate(params, model_state, batch):
        logits, _ = functional.apply(graphdef, params, model_state, batch["x"], train=False)
        mask = batch.get("mask", jnp.ones(logits.shape[:1], jnp.float32))
        error = reconstruction_error(logits, batch["x"])
        return {"loss": (error * mask).sum() + penalty(params) * mask.sum(),
                "reconstruction": (error * mask).sum(), "count": mask.sum()}

    return Objective(loss=loss, evaluate=evaluate)
