"""Knowledge distillation (Hinton, Vinyals & Dean, 2015, arXiv:1503.02531).

A student matches the teacher's *softened* distribution ``softmax(z_teacher / T)`` as well as
the hard labels::

    loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
           + (1 - alpha) * CE(softmax(z_s), y)

The ``T^2`` factor keeps the soft term's gradient scale independent of ``T`` (its gradient
shrinks as ``1/T^2``). For large ``T`` and logits of zero mean over the classes, the soft
term tends to ``mean_i (z_t,i - z_s,i)^2 / 2`` (logit matching, Caruana's method), which
:func:`logit_matching_limit` computes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxdl.registry import ConfigError


def soft_kl(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float
            ) -> jax.Array:
    """``T^2 * KL(teacher_T || student_T)`` per example; logits ``[batch, classes]`` ->
    ``[batch]``."""
    log_p = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
    log_q = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    return temperature**2 * jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array,
                      labels: jax.Array | None, *, temperature: float = 4.0,
                      alpha: float = 0.9) -> jax.Array:
    """Mean distillation loss over the batch (see the module docstring).

    Args:
      student_logits, teacher_logits: ``[batch, classes]``; the teacher is not
        differentiated (``stop_gradient``).
      labels: ``[batch]`` integer labels, or None when ``alpha == 1`` (soft targets only).
      temperature: ``T > 0``; alpha: weight of the soft term in ``[0, 1]``.
    """
    if not temperature > 0:
        raise ConfigError(f"distill.temperature={temperature!r}: expected a positive number.")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"distill.alpha={alpha!r}: expected 0 <= alpha <= 1.")
    if labels is None and alpha < 1.0:
        raise ConfigError("distill.labels is None: expected integer labels when alpha < 1.")
    soft = soft_kl(student_logits, jax.lax.stop_gradient(teacher_logits), temperature).mean()
    if alpha == 1.0:
        return soft
    hard = optax.softmax_cross_entropy_with_integer_labels(student_logits, labels).mean()
    return alpha * soft + (1.0 - alpha) * hard


def logit_matching_limit(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
    """The ``T -> inf`` limit of :func:`soft_kl`: ``sum_i (dz_i - mean dz)^2 / (2 K)`` with
    ``dz = z_t - z_s`` and ``K`` classes; ``[batch]``."""
    dz = teacher_logits - student_logits
    dz = dz - dz.mean(axis=-1, keepdims=True)
    return jnp.sum(dz**2, axis=-1) / (2 * dz.shape[-1])
