"""Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290).

Given preference pairs ``(x, y_w, y_l)`` (``y_w`` preferred) and a frozen reference policy,
DPO fits the policy by logistic regression on the implicit reward
``r(y) = beta * (log pi(y|x) - log pi_ref(y|x))``::

    loss = -log sigmoid(r(y_w) - r(y_l))

which optimises the KL-regularised reward objective of RLHF without a reward model or
sampling. Sequence log-probabilities are sums of token log-probabilities over the response.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdl.registry import ConfigError


class DPOOutput(NamedTuple):
    loss: jax.Array  # scalar, mean over pairs
    margin: jax.Array  # [pairs] implicit reward margin r(y_w) - r(y_l)
    accuracy: jax.Array  # scalar, fraction of pairs with a positive margin


def sequence_log_prob(logits: jax.Array, tokens: jax.Array, mask: jax.Array | None = None
                      ) -> jax.Array:
    """``sum_t mask_t * log softmax(logits_t)[tokens_t]``.

    Args:
      logits: ``[batch, length, vocab]`` predictions for ``tokens`` (already shifted:
        ``logits[:, t]`` predicts ``tokens[:, t]``).
      tokens: ``[batch, length]`` integers; mask: ``[batch, length]`` (1 = response token).
    Returns ``[batch]``.
    """
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]
    if mask is not None:
        picked = picked * mask
    return picked.sum(axis=-1)


def dpo_loss(policy_chosen: jax.Array, policy_rejected: jax.Array, reference_chosen: jax.Array,
             reference_rejected: jax.Array, *, beta: float = 0.1) -> DPOOutput:
    """DPO loss from sequence log-probabilities, each ``[pairs]``; the reference terms are
    not differentiated."""
    if not beta > 0:
        raise ConfigError(f"dpo.beta={beta!r}: expected a positive number.")
    reference_chosen = jax.lax.stop_gradient(reference_chosen)
    reference_rejected = jax.lax.stop_gradient(reference_rejected)
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    loss = -jax.nn.log_sigmoid(margin).mean()
    return DPOOutput(loss, margin, (margin > 0).mean())
