"""Named rematerialisation (gradient checkpointing) policies (Chen et al., 2016).

``jax.checkpoint`` discards a block's intermediate activations after the forward pass and
recomputes them in the backward pass; a *policy* names the intermediates that are kept
anyway. Names accepted by :func:`checkpoint_policy` and :func:`remat`:

=================================  =========================================================
``none``                           no checkpoint: every residual saved (most memory, no
                                   recomputation)
``full``                           save nothing, recompute the whole block
``dots_saveable``                  keep matmul outputs, recompute the cheap elementwise ops
``dots_with_no_batch_dims_saveable`` keep only matmuls without batch dimensions (the
                                   weight products, not attention's ``q k^T``)
``save_names``                     keep only the values tagged ``checkpoint_name(x, name)``
                                   for ``name`` in ``names``
``offload``                        move the tagged values to host memory (``pinned_host``)
                                   instead of recomputing them. It compiles and runs on CPU,
                                   where device and host memory are the same RAM, so it saves
                                   nothing there; it pays off on GPU/TPU.
=================================  =========================================================

:class:`jaxdl.models.transformer.LayerStack` applies the same policies to every transformer
layer through its ``remat`` option; this module is for any other block function.
:func:`step_time_bf16_vs_f32` (for ``experiments.bench.scale``) times a small GPT step under
the ``f32`` and ``bf16`` precision policies.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxdl.registry import ConfigError

POLICY_NAMES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable",
                "save_names", "offload")
# The short names LayerStack's ``model.remat`` uses.
ALIASES = {"dots": "dots_saveable", "dots_no_batch": "dots_with_no_batch_dims_saveable"}


def checkpoint_policy(name: str, names: Sequence[str] = ()) -> Callable[..., Any] | None:
    """The ``jax.checkpoint`` policy called ``name`` (None for ``none``).

    ``names``: the ``checkpoint_name`` tags kept (``save_names``) or offloaded (``offload``).
    """
    name = ALIASES.get(name, name)
    if name not in POLICY_NAMES:
        raise ConfigError(f"remat.policy={name!r}: expected one of {list(POLICY_NAMES)}.")
    if name in ("save_names", "offload") and not names:
        raise ConfigError(f"remat.names=(): policy {name!r} needs at least one name tagged "
                          "with jax.ad_checkpoint.checkpoint_name.")
    policies = jax.checkpoint_policies
    if name == "none":
        return None
    if name == "full":
        return policies.nothing_saveable
    if name == "save_names":
        return policies.save_only_these_names(*names)
    if name == "offload":
        return policies.save_and_offload_only_these_names(
            names_which_can_be_saved=[], names_which_can_be_offloaded=list(names),
            offload_src="device", offload_dst="pinned_host")
    return getattr(policies, name)


def remat(block: Callable[..., Any], policy: str = "full", *, names: Sequence[str] = (),
          static_argnums: tuple[int, ...] = ()) -> Callable[..., Any]:
    """``block`` under ``jax.checkpoint`` with the named policy (``none``: unchanged)."""
    if ALIASES.get(policy, policy) == "none":
        checkpoint_policy(policy)
        return block
    return jax.checkpoint(block, policy=checkpoint_policy(policy, names),
                          static_argnums=static_argnums)


def temp_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """Scratch memory XLA allocates for ``jax.jit(fn)(*args)``, from ``memory_analysis()``."""
    return int(jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes)


def step_time_bf16_vs_f32(*, d_model: int = 128, num_layers: int = 2, num_heads: int = 4,
                          seq_len: int = 64, batch_size: int = 16, vocab: int = 65,
                          rounds: int = 7, steps_per_round: int = 3, remat_policy: str = "none",
                          seed: int = 0) -> dict[str, Any]:
    """Median seconds of one small-GPT train step (Adam) under ``f32`` and ``bf16``.

    Both steps are compiled first, then timed in interleaved rounds (f32, bf16, f32, ...)
    so that load on a shared machine hits both alike; each round runs ``steps_per_round``
    steps and blocks. Returns ``{"f32_step_s", "bf16_step_s", "bf16_over_f32_step",
    "rounds", "model"}``.
    """
    import optax
    from flax import nnx

    from jaxdl import functional
    from jaxdl.models import MODELS
    from jaxdl.parallel import precision
    from jaxdl.train.objectives import classification

    model = MODELS.build({"name": "gpt", "d_model": d_model, "num_layers": num_layers,
                         "num_heads": num_heads,
                         "remat": {v: k for k, v in ALIASES.items()}.get(remat_policy,
                                                                         remat_policy)},
                        field="model", input_shape=(seq_len,), num_classes=vocab,
                        rngs=nnx.Rngs(seed))
    graphdef, params, state = functional.split_model(model)
    loss_fn = classification(graphdef=graphdef).loss
    tokens = np.random.default_rng(seed).integers(0, vocab, (batch_size, seq_len + 1))
    batch = {"x": tokens[:, :-1].astype(np.int32), "y": tokens[:, 1:].astype(np.int32)}
    runs = {}
    for name in ("f32", "bf16"):
        tx = precision.make_optimizer(optax.adam(1e-3), name)
        step = jax.jit(precision.policy_train_step(loss_fn, tx, name))
        carry = (params, state, tx.init(params))
        carry = step(*carry, batch, None)[:3]  # compile + warm up
        jax.block_until_ready(carry)
        runs[name] = [step, carry, []]
    for _ in range(rounds):
        for run in runs.values():
            step, carry, times = run
            start = time.perf_counter()
            for _ in range(steps_per_round):
                carry = step(*carry, batch, None)[:3]
            jax.block_until_ready(carry)
            times.append((time.perf_counter() - start) / steps_per_round)
            run[1] = carry
    f32, bf16 = (statistics.median(runs[n][2]) for n in ("f32", "bf16"))
    return {"f32_step_s": f32, "bf16_step_s": bf16, "bf16_over_f32_step": bf16 / f32,
            "rounds": rounds, "model": {"d_model": d_model, "num_layers": num_layers,
                                        "seq_len": seq_len, "batch_size": batch_size}}
