"""The ``seq2seq`` objective: teacher-forced training, autoregressive evaluation.

Batch: ``x: int [batch, S]`` source, ``y: int [batch, T]`` target, with token ``bos``
(default 0) reserved as the decoder's start token. The model is called through
``functional.apply(graphdef, params, state, (x, decoder_input))`` with
``decoder_input = [bos, y_0, ..., y_{T-2}]`` (teacher forcing; Williams & Zipser, 1989) and
returns logits ``[batch, T, vocab]``.

Metrics: ``loss`` (nats per target token), ``accuracy`` (per token, teacher-forced) and, in
evaluation, ``sequence_accuracy``: the whole target decoded autoregressively (the model sees
its own outputs) must match exactly. Decoding uses the model's ``start_decoding(src)``
next-token function when it has one (greedy, or beam search with ``beam_width > 1``), and
otherwise reruns the teacher-forced forward once per position
(:func:`jaxdl.models.seq2seq_decoding.greedy_decode_by_recompute`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl import functional
from jaxdl.models.seq2seq_decoding import (
    beam_search,
    greedy_decode,
    greedy_decode_by_recompute,
)
from jaxdl.train.objectives import OBJECTIVES, Objective


def decoder_input(y: jax.Array, bos: int = 0) -> jax.Array:
    """``y: [batch, T] -> [bos, y_0, ..., y_{T-2}]``, the teacher-forced decoder input."""
    return jnp.concatenate([jnp.full((y.shape[0], 1), bos, y.dtype), y[:, :-1]], axis=1)


def decode(graphdef: nnx.GraphDef, params, model_state, src: jax.Array, length: int, *,
           bos: int = 0, beam_width: int = 1) -> jax.Array:
    """Autoregressive output ``int32 [batch, length]`` of any seq2seq model (see module doc)."""
    model = functional.merge_model(graphdef, params, model_state)
    if hasattr(model, "start_decoding"):
        step_fn, carry = model.start_decoding(src)
        if beam_width == 1:
            return greedy_decode(step_fn, carry, src.shape[0], length, bos)
        return beam_search(step_fn, carry, src.shape[0], length, beam_width, bos)[0][:, 0]
    if beam_width != 1:
        raise ValueError(f"loss.beam_width={beam_width} needs a model with start_decoding(); "
                         f"{type(model).__name__} has none, so only beam_width=1 works.")

    def apply_fn(src, dec_in):
        return functional.apply(graphdef, params, model_state, (src, dec_in))[0]

    return greedy_decode_by_recompute(apply_fn, src, length, bos)


@OBJECTIVES.register("seq2seq")
def seq2seq(*, graphdef: nnx.GraphDef, bos: int = 0, beam_width: int = 1,
            label_smoothing: float = 0.0) -> Objective:
    """Options: ``bos`` (start token id), ``beam_width`` for ``sequence_accuracy`` (1 =
    greedy), ``label_smoothing`` (Szegedy et al., 2016) of the training loss."""
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"loss.beam_width={beam_width!r}: expected an integer >= 1.")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"loss.label_smoothing={label_smoothing}: expected 0 <= value < 1.")

    def token_losses(logits, y, smoothing):
        logits = logits.astype(jnp.float32)
        if smoothing == 0.0:
            return optax.softmax_cross_entropy_with_integer_labels(logits, y)
        targets = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1]), smoothing)
        return optax.softmax_cross_entropy(logits, targets)

    def loss(params, model_state, batch, rng):
        x, y = batch["x"], batch["y"]
        logits, new_state = functional.apply(graphdef, params, model_state,
                                             (x, decoder_input(y, bos)), train=True, rng=rng)
        value = token_losses(logits, y, label_smoothing).mean()
        accuracy = (logits.argmax(-1) == y).mean()
        return value, ({"accuracy": accuracy}, new_state)

    def evaluate(params, model_state, batch):
        x, y = batch["x"], batch["y"]
        mask = batch.get("mask", jnp.ones(y.shape[:1], jnp.float32))
        logits, _ = functional.apply(graphdef, params, model_state, (x, decoder_input(y, bos)))
        # Every target has the same length, so the mean over sequences of per-sequence
        # token means is the per-token mean.
        nll = token_losses(logits, y, 0.0).mean(-1)
        accuracy = (logits.argmax(-1) == y).mean(-1)
        decoded = decode(graphdef, params, model_state, x, y.shape[1], bos=bos,
                         beam_width=beam_width)
        exact = jnp.all(decoded == y, axis=-1).astype(jnp.float32)
        return {"loss": (nll * mask).sum(), "accuracy": (accuracy * mask).sum(),
                "sequence_accuracy": (exact * mask).sum(), "count": mask.sum()}

    return Objective(loss=loss, evaluate=evaluate)


@OBJECTIVES.register("tbptt_language_model")
def tbptt_language_model(*, graphdef: nnx.GraphDef, window: int = 64) -> Objective:
    """Truncated BPTT over whole streams (data ``tinyshakespeare_streams``, a model with
    ``stream_rows``, e.g. ``rnn_lm``).

    Training batch: ``x, y: int [rows, L]`` whole streams, ``row: int [rows]``. Each step the
    model reads the next ``window`` characters of every stream, starting from the state it
    ended the previous window with (kept in its model state), and gradients stop at the window
    boundary (Williams & Peng, 1990). Evaluation runs each held-out row whole from a zero state.
    Metrics: ``loss`` (nats/char), ``accuracy``.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"loss.window={window!r}: expected an integer >= 1.")

    def loss(params, model_state, batch, rng):
        x, y = batch["x"], batch["y"]
        if window > x.shape[1]:
            raise ValueError(f"loss.window={window} exceeds the stream length {x.shape[1]}.")
        inputs = {"stream": x, "rows": batch["row"], "window": window}
        (logits, start), new_state = functional.apply(graphdef, params, model_state, inputs,
                                                      train=True, rng=rng)
        targets = jax.lax.dynamic_slice_in_dim(y, start, window, axis=1)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                              targets)
        accuracy = (logits.argmax(-1) == targets).mean()
        return nll.mean(), ({"accuracy": accuracy}, new_state)

    def evaluate(params, model_state, batch):
        x, y = batch["x"], batch["y"]
        mask = batch.get("mask", jnp.ones(y.shape[:1], jnp.float32))
        logits, _ = functional.apply(graphdef, params, model_state, x)
        weight = jnp.broadcast_to(mask[:, None], y.shape)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)
        correct = (logits.argmax(-1) == y).astype(jnp.float32)
        return {"loss": (nll * weight).sum(), "accuracy": (correct * weight).sum(),
                "count": weight.sum()}

    return Objective(loss=loss, evaluate=evaluate)
