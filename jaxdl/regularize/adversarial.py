"""Adversarial examples and adversarial training.

* FGSM (Goodfellow et al., 2015): one step ``x + epsilon * sign(grad_x loss)``.
* PGD (Madry et al., 2018): ``steps`` signed-gradient steps of size ``step_size`` from a
  random start in the L-infinity ball, each projected back onto ``|x' - x| <= epsilon``.
* Adversarial training (Madry et al., 2018; Goodfellow et al., 2015's mixed objective):
  replace a ``fraction`` of each training batch with its attacked version.

``loss_fn(x) -> per-example losses [batch]`` closes over the parameters; inputs are clipped
to ``[clip_min, clip_max]`` (the data range, [0, 1] for our images).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

ATTACKS = ("fgsm", "pgd")


def _input_grad(loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    return jax.grad(lambda z: loss_fn(z).sum())(x)


def fgsm(loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array, epsilon: float, *,
         clip_min: float = 0.0, clip_max: float = 1.0) -> jax.Array:
    """One signed-gradient step of size ``epsilon``; ``x: [batch, ...]``."""
    x = jax.lax.stop_gradient(x)
    step = epsilon * jnp.sign(_input_grad(loss_fn, x))
    return jax.lax.stop_gradient(jnp.clip(x + step, clip_min, clip_max))


def pgd(loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array, epsilon: float, *,
        steps: int = 10, step_size: float | None = None, key: jax.Array | None = None,
        clip_min: float = 0.0, clip_max: float = 1.0) -> jax.Array:
    """Projected gradient ascent in the L-infinity ball of radius ``epsilon``.

    ``step_size`` defaults to ``2.5 * epsilon / steps``; ``key`` gives the random start
    (None starts at ``x``).
    """
    x = jax.lax.stop_gradient(x)
    step_size = 2.5 * epsilon / steps if step_size is None else step_size
    start = x
    if key is not None:
        start = x + jax.random.uniform(key, x.shape, x.dtype, -epsilon, epsilon)
    start = jnp.clip(start, clip_min, clip_max)

    def body(_, xa):
        xa = xa + step_size * jnp.sign(_input_grad(loss_fn, xa))
        return jnp.clip(jnp.clip(xa, x - epsilon, x + epsilon), clip_min, clip_max)

    return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, start))


def check_attack(spec: Mapping[str, Any] | None, field: str) -> dict[str, Any] | None:
    """Validate ``{"attack": "fgsm"|"pgd", "epsilon": e, "steps": n, "step_size": s,
    "fraction": f}`` (``fraction``: share of a training batch attacked)."""
    if spec is None:
        return None
    spec = dict(spec)
    known = ("attack", "epsilon", "steps", "step_size", "fraction", "clip_min", "clip_max")
    for key in spec:
        if key not in known:
            raise ValueError(f"{field}.{key} is not an attack option; expected keys among "
                             f"{list(known)}.")
    if spec.get("attack") not in ATTACKS:
        raise ValueError(f"{field}.attack={spec.get('attack')!r}: expected one of "
                         f"{list(ATTACKS)}.")
    epsilon = spec.get("epsilon")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
        raise ValueError(f"{field}.epsilon={epsilon!r}: expected a number > 0.")
    steps = spec.setdefault("steps", 10)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{field}.steps={steps!r}: expected an integer >= 1.")
    fraction = spec.setdefault("fraction", 0.5)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{field}.fraction={fraction!r}: expected 0 < fraction <= 1.")
    return spec


def attack(spec: Mapping[str, Any], loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
           key: jax.Array | None) -> jax.Array:
    """Run the attack a validated ``spec`` (see :func:`check_attack`) names."""
    clip = {"clip_min": spec.get("clip_min", 0.0), "clip_max": spec.get("clip_max", 1.0)}
    if spec["attack"] == "fgsm":
        return fgsm(loss_fn, x, spec["epsilon"], **clip)
    return pgd(loss_fn, x, spec["epsilon"], steps=spec["steps"],
               step_size=spec.get("step_size"), key=key, **clip)


def mix_adversarial(x: jax.Array, x_adv: jax.Array, fraction: float) -> jax.Array:
    """The first ``round(fraction * batch)`` examples attacked, the rest clean."""
    n = int(round(fraction * x.shape[0]))
    return jnp.concatenate([x_adv[:n], x[n:]], axis=0)
