"""Greedy layer-wise autoencoder pretraining of an MLP (Hinton, Osindero & Teh, 2006;
Bengio, Lamblin, Popovici & Larochelle, 2007).

Before good initializations and normalization, deep nets were started from weights learned
one layer at a time: hidden layer ``l`` is trained as the encoder of a one-hidden-layer
autoencoder that reconstructs the (frozen) codes of layers ``1..l-1``, then the next layer is
stacked on its codes, and the whole net is finally fine-tuned with supervised backprop. Here
each autoencoder is ``code = act(h @ W + b)``, ``recon = code @ W_dec + b_dec`` (untied, a
linear decoder) with the mean squared reconstruction error, trained by Adam on the full
batch inside one ``lax.scan`` per layer. Only hidden layers are pretrained; the output head
is left as it is.

Works on the layer formats of :mod:`jaxdl.init` (a list of ``{"kernel", "bias"}`` or jaxdl
MLP params), so the result drops straight into ``TrainState.params``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdl.init import Layer, _activation, _like, mlp_layers


class PretrainResult(NamedTuple):
    params: Any  # same structure as the input params
    losses: jax.Array  # [num_pretrained_layers, steps] reconstruction MSE before each step


def _train_autoencoder(layer: Layer, inputs: jax.Array, key: jax.Array, act: Callable,
                       steps: int, learning_rate: float) -> tuple[Layer, jax.Array]:
    """Fit ``layer`` as the encoder of an autoencoder on ``inputs: [batch, d_in]``."""
    d_in, d_out = layer["kernel"].shape
    scale = 1.0 / jnp.sqrt(d_out)
    decoder = {"kernel": scale * jax.random.normal(key, (d_out, d_in), inputs.dtype),
               "bias": jnp.zeros((d_in,), inputs.dtype)}
    params = {"encoder": dict(layer), "decoder": decoder}
    tx = optax.adam(learning_rate)

    def reconstruction_error(p):
        code = act(inputs @ p["encoder"]["kernel"] + p["encoder"]["bias"])
        recon = code @ p["decoder"]["kernel"] + p["decoder"]["bias"]
        return jnp.mean(jnp.square(recon - inputs))

    def step(carry, _):
        p, opt_state = carry
        loss, grads = jax.value_and_grad(reconstruction_error)(p)
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params["encoder"], losses


def pretrain_layerwise(params: Sequence[Layer] | Mapping[str, Any],
                       activation: str | Callable, x: jax.Array, key: jax.Array, *,
                       steps: int = 200, learning_rate: float = 1e-3,
                       include_last: bool | None = None) -> PretrainResult:
    """Greedy layer-wise autoencoder pretraining; pure, jit-able with static options.

    Args:
      params: a list of ``{"kernel": [d_in, d_out], "bias": [d_out]}`` or jaxdl MLP params.
      activation: the hidden activation (callable or ``jax.nn`` name).
      x: ``[batch, ...]`` unlabelled inputs, flattened to ``[batch, d_in]``.
      key: PRNG key for the decoders' initial weights.
      steps, learning_rate: Adam steps and rate per layer.
      include_last: pretrain the last layer too; default False for jaxdl MLP params (their
        last layer is the classifier head) and True for a plain list.

    Returns:
      :class:`PretrainResult` with params of the input structure and the per-layer curves.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: expected an integer >= 1.")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r}: expected a positive float.")
    act, layers = _activation(activation), mlp_layers(params)
    if include_last is None:
        include_last = not isinstance(params, Mapping)
    count = len(layers) if include_last else len(layers) - 1
    if count < 1:
        raise ValueError("params: no hidden layer to pretrain (pass include_last=True to "
                         "pretrain a single layer).")
    h = jnp.reshape(x, (x.shape[0], -1))
    new_layers, curves = list(layers), []
    for index, layer_key in zip(range(count), jax.random.split(key, count)):
        new_layers[index], losses = _train_autoencoder(layers[index], h, layer_key, act,
                                                       steps, learning_rate)
        curves.append(losses)
        h = act(h @ new_layers[index]["kernel"] + new_layers[index]["bias"])  # frozen codes
    return PretrainResult(_like(params, new_layers), jnp.stack(curves))
