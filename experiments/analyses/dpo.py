"""DPO on a toy preference task: teach a tiny token model to prefer ascending sequences.

Policy and reference are a small autoregressive model over ``vocab`` tokens that sees the
previous token and the position. Preference pairs are two sequences sampled from the
reference; the "chosen" one has more ascending adjacent steps (``y[i+1] > y[i]``), ties are
dropped. The policy starts as the reference and is trained with the DPO loss (Rafailov et
al., 2023); we track on held-out pairs the implicit reward margin and pair accuracy, and on
fresh samples the mean number of ascending steps and the win-rate of policy samples over
reference samples (ties count one half).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.analyses import _loops
from experiments.analyses.registry import ANALYSES
from jaxdl import functional
from jaxdl.adapt.dpo import dpo_loss, sequence_log_prob


class TinyTokenModel(nnx.Module):
    """``tokens: [batch, length]`` (position 0 is BOS = ``vocab``) -> next-token logits
    ``[batch, length, vocab]`` from the current token and its position."""

    def __init__(self, vocab: int, length: int, hidden: int = 64, *, rngs: nnx.Rngs):
        self.token = nnx.Embed(vocab + 1, hidden, rngs=rngs)
        self.position = nnx.Embed(length, hidden, rngs=rngs)
        self.mid = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, vocab, rngs=rngs)

    def __call__(self, tokens, *, train: bool = False, rngs: nnx.Rngs | None = None):
        del train, rngs
        h = self.token(tokens) + self.position(jnp.arange(tokens.shape[1]))
        return self.out(jax.nn.relu(self.mid(jax.nn.relu(h))))


def ascending_steps(y: np.ndarray) -> np.ndarray:
    """Number of ``i`` with ``y[:, i+1] > y[:, i]``; ``[n, length] -> [n]``."""
    return (np.diff(y, axis=1) > 0).sum(axis=1)


def _inputs(y, vocab: int):  # BOS (= vocab) then the sequence shifted right
    bos = jnp.full((y.shape[0], 1), vocab, y.dtype)
    return jnp.concatenate([bos, y[:, :-1]], axis=1)


def make_sampler(graphdef, state, vocab: int, length: int, n: int):
    @jax.jit
    def sample(params, key):
        def body(y, i):
            logits, _ = functional.apply(graphdef, params, state, _inputs(y, vocab))
            token = jax.random.categorical(jax.random.fold_in(key, i), logits[:, i])
            return y.at[:, i].set(token), None

        y, _ = jax.lax.scan(body, jnp.zeros((n, length), jnp.int32), jnp.arange(length))
        return y

    return sample


@ANALYSES.register("dpo")
def run(*, workdir: pathlib.Path, seed: int, vocab: int = 8, length: int = 8,
        num_pairs: int = 2000, beta: float = 0.1, num_steps: int = 300, batch_size: int = 64,
        learning_rate: float = 1e-3, eval_every: int = 50) -> dict[str, Any]:
    dpo_loss(*np.zeros((4, 1), np.float32), beta=beta)  # checks beta before training
    graphdef, ref_params, state = functional.split_model(
        TinyTokenModel(vocab, length, rngs=nnx.Rngs(seed)))
    sampler = make_sampler(graphdef, state, vocab, length, 2 * num_pairs)
    raw = np.asarray(sampler(ref_params, jax.random.key(seed + 1)))
    a, b = raw[:num_pairs], raw[num_pairs:]
    sa, sb = ascending_steps(a), ascending_steps(b)
    keep = sa != sb
    chosen = np.where((sa > sb)[:, None], a, b)[keep]
    rejected = np.where((sa > sb)[:, None], b, a)[keep]
    n_eval = len(chosen) // 5
    split = lambda arr: (arr[n_eval:], arr[:n_eval])
    (train_c, eval_c), (train_r, eval_r) = split(chosen), split(rejected)

    def logp(params, y):
        logits, _ = functional.apply(graphdef, params, state, _inputs(y, vocab))
        return sequence_log_prob(logits, y)

    def pair_stats(params, c, r):
        return dpo_loss(logp(params, c), logp(params, r), logp(ref_params, c),
                        logp(ref_params, r), beta=beta)

    def loss_fn(params, batch, key):
        return pair_stats(params, batch["chosen"], batch["rejected"]).loss

    eval_stats = jax.jit(pair_stats)
    eval_sampler = make_sampler(graphdef, state, vocab, length, 1000)
    ref_scores = ascending_steps(np.asarray(eval_sampler(ref_params, jax.random.key(seed + 2))))
    history = []

    def evaluate(step, params):
        stats = eval_stats(params, eval_c, eval_r)
        scores = ascending_steps(np.asarray(eval_sampler(params, jax.random.key(seed + 3))))
        win = np.mean((scores > ref_scores) + 0.5 * (scores == ref_scores))
        history.append({"step": step, "eval_loss": float(stats.loss),
                        "eval_margin": float(stats.margin.mean()),
                        "eval_pair_accuracy": float(stats.accuracy),
                        "mean_ascending_steps": float(scores.mean()), "win_rate": float(win)})
    _loops.fit(loss_fn, ref_params, optax.adam(learning_rate),
               {"chosen": train_c, "rejected": train_r}, batch_size=batch_size,
               num_steps=num_steps, seed=seed, every=eval_every, callback=evaluate)
    summary = {"pairs_train": int(len(train_c)), "pairs_eval": int(n_eval),
               "reference_mean_ascending_steps": float(ref_scores.mean()),
               "start": history[0], "end": history[-1]}
    return {"summary": summary, "history": history, "figures": []}
