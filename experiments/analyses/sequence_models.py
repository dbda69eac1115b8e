"""Sequence-model analyses: language-model samples, seq2seq attention maps, and the gradient
of a recurrent network's loss against the time lag of its input.

All training goes through ``jaxdl.train.train_and_evaluate``; these functions only look at the
trained (or freshly initialized) parameters afterwards.

* ``language_model_samples``: train a token LM (``rnn_lm`` or ``ssm_lm``) on tinyshakespeare,
  then sample text from a prompt with the model's recurrent ``generate``.
* ``seq2seq_attention``: train an encoder-decoder, report greedy and beam-search sequence
  accuracy and draw attention heatmaps (target step x source position).
* ``gradient_vs_lag``: on the ``recall`` task the answer is the first token, so the gradient
  reaching input ``t`` measures how much signal survives ``T - 1 - t`` recurrent steps
  (Bengio, Simard & Frasconi, 1994; Hochreiter & Schmidhuber, 1997). One line per cell type,
  at initialization and after training.
"""

from __future__ import annotations

import copy
import logging
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl import functional
from jaxdl.data import decode as decode_text
from jaxdl.data import encode as encode_text
from jaxdl.models.seq2seq_decoding import beam_search
from jaxdl.monitor.plots import subplots
from jaxdl.train import build_experiment, train_and_evaluate
from jaxdl.train.sequence_objectives import decode, decoder_input

log = logging.getLogger(__name__)


@ANALYSES.register("language_model_samples")
def language_model_samples(*, workdir: pathlib.Path, seed: int, train, prompt: str = "ROMEO:",
                           num_samples: int = 2, sample_length: int = 200,
                           temperature: float = 0.8) -> dict[str, Any]:
    """Train ``train`` (a token LM config), then sample ``num_samples`` continuations."""
    start = time.perf_counter()
    result = train_and_evaluate(train, pathlib.Path(workdir) / "train")
    seconds = time.perf_counter() - start
    exp, state = result.experiment, result.state
    vocab = exp.dataset.info["vocab"]
    graphdef = exp.graphdef

    @jax.jit
    def sample(params, model_state, prompt_ids, key):
        model = functional.merge_model(graphdef, params, model_state)
        return model.generate(prompt_ids, sample_length, key, temperature=temperature)

    prompt_ids = jnp.tile(jnp.asarray(encode_text(prompt, vocab))[None], (num_samples, 1))
    tokens = sample(state.params, state.model_state, prompt_ids, jax.random.key(seed))
    samples = [prompt + decode_text(np.asarray(row), vocab) for row in tokens]
    for text in samples:
        log.info("sample:\n%s", text)
    loss = result.eval_metrics["loss"]
    summary = {"model": train.model.to_dict(), "eval_loss_nats_per_char": loss,
               "eval_bits_per_char": loss / np.log(2.0),
               "eval_accuracy": result.eval_metrics.get("accuracy"),
               "num_params": functional.count_params(state.params),
               "train_seconds_including_compile": seconds, "steps": int(state.step)}
    (pathlib.Path(workdir) / "samples.txt").write_text("\n\n---\n\n".join(samples))
    return {"summary": summary, "samples": samples, "figures": ["train/curves.png"]}


@ANALYSES.register("seq2seq_attention")
def seq2seq_attention(*, workdir: pathlib.Path, seed: int, train, num_maps: int = 3,
                      beam_width: int = 4) -> dict[str, Any]:
    """Train an attention seq2seq, then draw attention maps of held-out examples."""
    start = time.perf_counter()
    result = train_and_evaluate(train, pathlib.Path(workdir) / "train")
    seconds = time.perf_counter() - start
    exp, state = result.experiment, result.state
    graphdef = exp.graphdef
    held_out = {k: jnp.asarray(v) for k, v in exp.dataset.eval.items()}
    length = held_out["y"].shape[1]

    @jax.jit
    def outputs(params, model_state, x, y):
        model = functional.merge_model(graphdef, params, model_state)
        _, weights = model.teacher_forced(x, decoder_input(y))
        step_fn, carry = model.start_decoding(x)
        beams = beam_search(step_fn, carry, x.shape[0], length, beam_width)[0][:, 0]
        greedy = decode(graphdef, params, model_state, x, length)
        return weights, greedy, beams

    weights, greedy, beams = outputs(state.params, state.model_state, held_out["x"],
                                     held_out["y"])
    exact = lambda tokens: float(jnp.mean(jnp.all(tokens == held_out["y"], axis=1)))
    fig, axes = subplots(1, num_maps, figsize=(3.4 * num_maps, 3.3))
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(np.asarray(weights[i]), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(length), [str(t) for t in np.asarray(held_out["x"][i])])
        ax.set_yticks(range(length), [str(t) for t in np.asarray(held_out["y"][i])])
        ax.set(xlabel="source token", ylabel="target token",
               title=f"{train.model.get('attention', '')} attention")
    fig.tight_layout()
    figure = pathlib.Path(workdir) / "attention.png"
    fig.savefig(figure, dpi=100)
    summary = {**result.eval_metrics, "greedy_sequence_accuracy": exact(greedy),
               f"beam{beam_width}_sequence_accuracy": exact(beams),
               "train_seconds_including_compile": seconds, "steps": int(state.step),
               "num_params": functional.count_params(state.params)}
    return {"summary": summary, "figures": [figure.name, "train/curves.png"]}


def _gradient_by_lag(experiment, state, batch) -> np.ndarray:
    """Mean over examples of ``||d z_y / d embedding_t||`` (``z_y``: the correct class's
    logit, which unlike the loss does not go flat once training succeeds), indexed by lag
    ``T - 1 - t``."""
    graphdef = experiment.graphdef

    @jax.jit
    def norms(params, model_state, x, y):
        model = functional.merge_model(graphdef, params, model_state)

        def loss(e):
            logits = model.from_embeddings(e)
            return jnp.take_along_axis(logits, y[:, None], axis=1).sum()

        g = jax.grad(loss)(model.embed(x))  # [batch, T, embed]
        return jnp.linalg.norm(g, axis=-1).mean(0)[::-1]

    return np.asarray(norms(state.params, state.model_state, batch["x"], batch["y"]))


@ANALYSES.register("gradient_vs_lag")
def gradient_vs_lag(*, workdir: pathlib.Path, seed: int, train,
                    cells: tuple[str, ...] = ("rnn", "lstm"),
                    num_examples: int = 256) -> dict[str, Any]:
    """Gradient norm at each input position vs its lag, per cell type, before/after training."""
    curves, summary = {}, {}
    for cell in cells:
        config = copy.deepcopy(train)
        config.model.cell = cell
        experiment = build_experiment(config)
        batch = {k: jnp.asarray(v[:num_examples]) for k, v in experiment.dataset.eval.items()}
        curves[f"{cell} init"] = _gradient_by_lag(experiment, experiment.init_state(), batch)
        result = train_and_evaluate(config, pathlib.Path(workdir) / f"train_{cell}")
        curves[f"{cell} trained"] = _gradient_by_lag(result.experiment, result.state, batch)
        summary[cell] = {
            "eval_accuracy": result.eval_metrics["accuracy"],
            "eval_loss": result.eval_metrics["loss"],
            "init_grad_ratio_max_lag_over_lag0": float(curves[f"{cell} init"][-1]
                                                        / curves[f"{cell} init"][0]),
            "trained_grad_ratio_max_lag_over_lag0": float(curves[f"{cell} trained"][-1]
                                                           / curves[f"{cell} trained"][0]),
        }
    fig, ax = subplots(figsize=(6.5, 4))
    for label, curve in curves.items():
        ax.semilogy(np.arange(curve.size), curve, "--" if "init" in label else "-", label=label)
    ax.set(xlabel="time lag (steps between input and read-out)", ylabel="mean ||dz_y/dx_t||",
           title="gradient reaching an input vs its lag (recall task)")
    ax.legend()
    fig.tight_layout()
    figure = pathlib.Path(workdir) / "gradient_vs_lag.png"
    fig.savefig(figure, dpi=100)
    return {"summary": summary, "figures": [figure.name],
            "curves": {k: v.tolist() for k, v in curves.items()}}
