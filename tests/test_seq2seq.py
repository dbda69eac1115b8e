"""Recurrent encoder-decoder with attention: decoding paths agree with each other and with
brute force, and a short run through the one training loop learns to reverse sequences."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models import MODELS
from jaxdl.models.seq2seq_decoding import beam_search, greedy_decode, greedy_decode_by_recompute
from jaxdl.train.sequence_objectives import decoder_input
from tests.helpers import tiny_config


def _model(attention, vocab=6, length=4, cell="gru"):
    return MODELS.build({"name": "rnn_seq2seq", "attention": attention, "hidden": 16,
                         "embed_dim": 8, "attention_dim": 12, "cell": cell}, field="model",
                        input_shape=(length,), num_classes=vocab, rngs=nnx.Rngs(0))


def _jitted(model, fn):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda state, *args: fn(nnx.merge(graphdef, state), *args)), state


@pytest.mark.parametrize("attention,cell", [("bahdanau", "gru"), ("luong", "lstm")])
def test_stepped_decoding_matches_teacher_forcing_and_beam_one_is_greedy(attention, cell):
    model = _model(attention, cell=cell)
    src = jax.random.randint(jax.random.key(1), (5, 4), 1, 6)

    def decodings(model, src):
        step_fn, carry = model.start_decoding(src)
        greedy = greedy_decode(step_fn, carry, 5, 4)
        beams, scores = beam_search(step_fn, carry, 5, 4, beam_width=1)
        recomputed = greedy_decode_by_recompute(lambda s, d: model((s, d)), src, 4)
        logits, weights = model.teacher_forced(src, decoder_input(greedy))
        return greedy, beams, scores, recomputed, logits, weights

    fn, state = _jitted(model, decodings)
    greedy, beams, scores, recomputed, logits, weights = fn(state, src)
    np.testing.assert_array_equal(beams[:, 0], greedy)
    np.testing.assert_array_equal(recomputed, greedy)
    # The teacher-forced pass over the greedy output picks the same tokens, with log-prob
    # sum equal to the beam's score.
    np.testing.assert_array_equal(logits.argmax(-1), greedy)
    logp = jax.nn.log_softmax(logits, -1)
    total = jnp.take_along_axis(logp, greedy[..., None], -1).sum((1, 2))
    np.testing.assert_allclose(scores[:, 0], total, rtol=1e-5, atol=1e-5)
    assert weights.shape == (5, 4, 4)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_wide_beam_finds_the_brute_force_best_sequence():
    vocab, length = 4, 3
    model = _model("luong", vocab=vocab, length=length)
    src = jax.random.randint(jax.random.key(2), (2, length), 1, vocab)
    candidates = jnp.asarray(list(itertools.product(range(vocab), repeat=length)), jnp.int32)

    def search(model, src):
        step_fn, carry = model.start_decoding(src)
        # Width vocab^(length-1) keeps every prefix, so the search is exhaustive.
        beams, scores = beam_search(step_fn, carry, 2, length, beam_width=vocab ** (length - 1))
        n = candidates.shape[0]
        tiled = jnp.repeat(src, n, axis=0)
        targets = jnp.tile(candidates, (2, 1))
        logp = jax.nn.log_softmax(model.teacher_forced(tiled, decoder_input(targets))[0], -1)
        every = jnp.take_along_axis(logp, targets[..., None], -1).sum((1, 2)).reshape(2, n)
        return beams, scores, every

    fn, state = _jitted(model, search)
    beams, scores, every = fn(state, src)
    best = np.asarray(candidates)[np.asarray(every).argmax(1)]
    np.testing.assert_array_equal(beams[:, 0], best)
    np.testing.assert_allclose(scores[:, 0], np.max(every, 1), rtol=1e-5)
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 1e-6)  # sorted best first


def test_bad_attention_name_is_a_clear_error():
    with pytest.raises(ValueError, match="model.attention='dot'"):
        _model("dot")


def test_objective_eval_sums_respect_the_mask():
    """Padded examples (mask 0) add nothing; sums are over the 3 real sequences."""
    from jaxdl.train.objectives import OBJECTIVES

    model = _model("bahdanau", length=4)
    graphdef, params, state = functional.split_model(model)
    objective = OBJECTIVES.build({"name": "seq2seq"}, field="loss", graphdef=graphdef)
    x = jax.random.randint(jax.random.key(3), (4, 4), 1, 6)
    batch = {"x": x, "y": x[:, ::-1], "mask": jnp.array([1.0, 1.0, 1.0, 0.0])}
    sums = jax.jit(objective.evaluate)(params, state, batch)
    assert float(sums["count"]) == 3.0
    assert 0.0 <= float(sums["sequence_accuracy"]) <= float(sums["accuracy"]) + 1e-6
    np.testing.assert_allclose(float(sums["loss"]) / 3.0, np.log(6.0), rtol=0.2)


@pytest.mark.slow
def test_reverse_task_is_learned_with_attention(tmp_path):
    from jaxdl.train import train_and_evaluate

    config = tiny_config(**{
        "data": {"name": "sequence_task", "task": "reverse", "length": 5, "num_train": 4096,
                 "num_eval": 256},
        "model": {"name": "rnn_seq2seq", "attention": "bahdanau", "hidden": 32,
                  "embed_dim": 16, "attention_dim": 32},
        "loss": {"name": "seq2seq"}, "num_steps": 150, "batch_size": 64,
        "eval_batch_size": 256, "eval_every": 0, "optimizer.learning_rate": 1e-2})
    metrics = train_and_evaluate(config, tmp_path).eval_metrics
    assert metrics["sequence_accuracy"] > 0.8, metrics


class _TeacherForcedOnly(nnx.Module):
    """A seq2seq model with nothing but the teacher-forced call (like a plain transformer)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, inputs, *, train=False, rngs=None):
        return self.inner(inputs)


def test_objective_decodes_models_without_a_step_function_by_recompute():
    from jaxdl.train.sequence_objectives import decode

    model = _model("luong", length=4)
    src = jax.random.randint(jax.random.key(4), (3, 4), 1, 6)
    parts = functional.split_model(model)
    wrapped = functional.split_model(_TeacherForcedOnly(model))

    @jax.jit
    def both(p1, s1, p2, s2, src):
        return (decode(parts[0], p1, s1, src, 4), decode(wrapped[0], p2, s2, src, 4))

    stepped, recomputed = both(parts[1], parts[2], wrapped[1], wrapped[2], src)
    np.testing.assert_array_equal(stepped, recomputed)
    with pytest.raises(ValueError, match="loss.beam_width=2"):
        decode(wrapped[0], wrapped[1], wrapped[2], src, 4, beam_width=2)
