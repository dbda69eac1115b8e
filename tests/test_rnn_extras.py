"""Recurrent extras: variational (recurrent) dropout, layer-normalised LSTM/GRU cells against
their equations in float64 numpy, and source padding masks in the seq2seq attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models import MODELS
from jaxdl.models.rnn import RecurrentLayer, make_cell, scan_cell, variational_masks

B, T, D, H = 3, 5, 4, 6


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _f64(p):
    return np.asarray(p[...], np.float64)


def _gate_norm(x, gates, eps=1e-5):
    y = x.reshape(*x.shape[:-1], gates, -1)
    y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + eps)
    return y.reshape(x.shape)


def _numpy_run(kind, cell, x, input_keep=None, state_keep=None, layer_norm=False):
    """The cell's equations step by step in float64; the masks are applied at every step."""
    wx, wh, b = _f64(cell.input_kernel), _f64(cell.recurrent_kernel), _f64(cell.bias)
    x = np.asarray(x, np.float64) * (1.0 if input_keep is None else np.asarray(input_keep)[:, None])
    mh = 1.0 if state_keep is None else np.asarray(state_keep, np.float64)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    h, c, outs = np.zeros((x.shape[0], H)), np.zeros((x.shape[0], H)), []
    for t in range(x.shape[1]):
        xp = x[:, t] @ wx
        if layer_norm:
            xp = _gate_norm(xp, gates) * _f64(cell.input_gain)
        xp = xp + b
        hd = h * mh
        if kind == "rnn":
            h = np.tanh(xp + hd @ wh)
        elif kind == "lstm":
            hp = hd @ wh
            if layer_norm:
                hp = _gate_norm(hp, 4) * _f64(cell.recurrent_gain)
            i, f, g, o = np.split(xp + hp, 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            cn = _gate_norm(c, 1) * _f64(cell.cell_gain) + _f64(cell.cell_shift) if layer_norm \
                else c
            h = _sigmoid(o) * np.tanh(cn)
        else:  # gru
            gain = _f64(cell.recurrent_gain) if layer_norm else np.ones(3 * H)
            zr_h = hd @ wh[:, :2 * H]
            zr_h = _gate_norm(zr_h, 2) * gain[:2 * H] if layer_norm else zr_h
            z, r = np.split(_sigmoid(xp[:, :2 * H] + zr_h), 2, axis=-1)
            n_h = (r * hd) @ wh[:, 2 * H:]
            n_h = _gate_norm(n_h, 1) * gain[2 * H:] if layer_norm else n_h
            h = (1 - z) * h + z * np.tanh(xp[:, 2 * H:] + n_h)
        outs.append(h)
    return np.stack(outs, 1)


def _randomise(cell, seed=1):
    """Non-trivial values for every parameter that starts at a constant."""
    keys = iter(jax.random.split(jax.random.key(seed), 8))
    for name in ("bias", "input_gain", "recurrent_gain", "cell_gain", "cell_shift"):
        if hasattr(cell, name):
            p = getattr(cell, name)
            p[...] = 1.0 + 0.5 * jax.random.normal(next(keys), p.shape) if "gain" in name \
                else 0.5 * jax.random.normal(next(keys), p.shape)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_layer_norm_cell_matches_numpy_equations(kind):
    cell = make_cell(kind, D, H, rngs=nnx.Rngs(0), layer_norm=True)
    _randomise(cell)
    x = 2.0 * np.asarray(jax.random.normal(jax.random.key(2), (B, T, D)))
    out, _ = scan_cell(cell, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), _numpy_run(kind, cell, x, layer_norm=True),
                               atol=3e-5)
    # The normalisation makes the state invariant to a rescaling of the recurrent kernel
    # (up to the epsilon in the variance).
    cell.recurrent_kernel[...] = cell.recurrent_kernel[...] * 7.0
    np.testing.assert_allclose(np.asarray(scan_cell(cell, jnp.asarray(x))[0]), np.asarray(out),
                               atol=5e-4)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_recurrent_dropout_matches_equations_with_one_mask_per_sequence(kind):
    layer = RecurrentLayer(kind, D, H, rngs=nnx.Rngs(0), dropout=0.3, recurrent_dropout=0.4)
    _randomise(layer.forward_cell)
    x = jax.random.normal(jax.random.key(2), (B, T, D))
    key = jax.random.key(7)
    out, _ = layer(x, dropout_key=key)
    input_keep, state_keep = variational_masks(jax.random.fold_in(key, 0), B, D, H,
                                               dropout=0.3, recurrent_dropout=0.4)
    assert 0 < np.sum(np.asarray(input_keep) == 0) < input_keep.size
    assert 0 < np.sum(np.asarray(state_keep) == 0) < state_keep.size
    # The numpy loop reuses the same two masks at every step: a per-step mask would differ.
    expected = _numpy_run(kind, layer.forward_cell, x, input_keep, state_keep)
    np.testing.assert_allclose(np.asarray(out), expected, atol=3e-5)


def test_recurrent_dropout_mask_is_fixed_across_time_identity_weights():
    """Vanilla RNN with ``W_x = I, W_h = 0``: ``h_t = tanh(x_t * m)``; with a constant input
    every step shows the same dropped units. With ``W_x = 0, W_h = I`` and ``h_0 = 1``, the
    units dropped from the state are zero at every step."""
    layer = RecurrentLayer("rnn", H, H, rngs=nnx.Rngs(0), dropout=0.5, recurrent_dropout=0.5)
    cell = layer.forward_cell
    cell.input_kernel[...] = jnp.eye(H)
    cell.recurrent_kernel[...] = jnp.zeros((H, H))
    x = jnp.ones((8, 12, H))
    out = np.asarray(layer(x, dropout_key=jax.random.key(3))[0])
    np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1], out.shape))
    assert 0 < np.sum(out[:, 0] == 0) < out[:, 0].size
    cell.input_kernel[...] = jnp.zeros((H, H))
    cell.recurrent_kernel[...] = jnp.eye(H)
    out = np.asarray(layer(x, carry=jnp.ones((8, H)), dropout_key=jax.random.key(3))[0])
    dropped = out == 0
    np.testing.assert_array_equal(dropped, np.broadcast_to(dropped[:, :1], dropped.shape))
    assert 0 < dropped[:, 0].sum() < dropped[:, 0].size


def test_hand_written_backward_with_recurrent_mask_equals_autodiff():
    """The LSTM fast path (custom VJP, ``mask=None``) against plain autodiff of the masked scan
    (an all-True mask takes the generic path), with a recurrent-dropout mask."""
    cell = make_cell("lstm", D, H, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(cell)
    x = jax.random.normal(jax.random.key(2), (B, T, D))
    _, keep = variational_masks(jax.random.key(4), B, D, H, dropout=0.0, recurrent_dropout=0.5)
    everything = jnp.ones((B, T), bool)

    def loss(params, x, mask):
        out, (h, c) = scan_cell(nnx.merge(graphdef, params), x, mask=mask, keep=keep)
        return jnp.sum(out ** 2) + jnp.sum(jnp.sin(c))

    fast = jax.grad(loss, argnums=(0, 1))(params, x, None)
    slow = jax.grad(loss, argnums=(0, 1))(params, x, everything)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(slow)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_dropout_identity_at_eval_and_expectation_preserved():
    x = jax.random.normal(jax.random.key(2), (B, T, D))
    plain = RecurrentLayer("lstm", D, H, rngs=nnx.Rngs(0), bidirectional=True)
    dropped = RecurrentLayer("lstm", D, H, rngs=nnx.Rngs(0), bidirectional=True, dropout=0.5,
                             recurrent_dropout=0.5)
    np.testing.assert_array_equal(np.asarray(dropped(x)[0]), np.asarray(plain(x)[0]))
    # A language model: train=False ignores rngs; train=True with a key changes the logits.
    lm = MODELS.build({"name": "rnn_lm", "hidden": 8, "embed_dim": 4, "recurrent_dropout": 0.3,
                       "dropout": 0.2}, field="model", input_shape=(T,), num_classes=7,
                      rngs=nnx.Rngs(0))
    lm_plain = MODELS.build({"name": "rnn_lm", "hidden": 8, "embed_dim": 4}, field="model",
                            input_shape=(T,), num_classes=7, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(1), (B, T), 0, 7)
    graphdef, state = nnx.split(lm)

    @jax.jit
    def evaluate_and_train(state, tokens):
        lm = nnx.merge(graphdef, state)
        return (lm(tokens, train=False, rngs=nnx.Rngs(dropout=1)),
                lm(tokens, train=True, rngs=nnx.Rngs(dropout=1)))

    evaluated, trained = evaluate_and_train(state, tokens)
    np.testing.assert_array_equal(np.asarray(evaluated), np.asarray(lm_plain(tokens)))
    assert np.abs(np.asarray(trained) - np.asarray(evaluated)).max() > 1e-3
    # Inverted scaling: over many sequences each mask entry averages to 1 (0 or 1/(1-p)).
    n, p = 4000, 0.3
    masks = jax.vmap(lambda k: variational_masks(k, 1, D, H, dropout=p, recurrent_dropout=p))(
        jax.random.split(jax.random.key(5), n))
    for m in masks:
        m = np.asarray(m)
        np.testing.assert_allclose(np.unique(m), [0.0, 1 / (1 - p)], rtol=1e-6)
        std = np.sqrt(p / (1 - p) / n)  # standard deviation of the mean of one entry
        assert np.abs(m.mean(0) - 1.0).max() < 5 * std


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="model.layer_norm"):
        make_cell("rnn", D, H, rngs=nnx.Rngs(0), layer_norm=True)
    with pytest.raises(ValueError, match="model.recurrent_dropout"):
        RecurrentLayer("gru", D, H, rngs=nnx.Rngs(0), recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="model.pad_id"):
        MODELS.build({"name": "rnn_seq2seq", "pad_id": 9}, field="model", input_shape=(4,),
                     num_classes=6, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("attention,cell", [("bahdanau", "gru"), ("luong", "lstm")])
def test_seq2seq_source_padding_gets_zero_weight_and_changes_nothing(attention, cell):
    pad, vocab, S = 0, 7, 6
    model = MODELS.build({"name": "rnn_seq2seq", "attention": attention, "cell": cell,
                          "hidden": 12, "embed_dim": 6, "attention_dim": 10, "pad_id": pad},
                         field="model", input_shape=(S,), num_classes=vocab, rngs=nnx.Rngs(0))
    lengths = np.array([6, 3, 4])
    valid = np.arange(S)[None] < lengths[:, None]
    src = np.asarray(jax.random.randint(jax.random.key(1), (3, S), 1, vocab))
    src = np.where(valid, src, pad)
    dec = jax.random.randint(jax.random.key(2), (3, 5), 1, vocab)
    junk = np.where(valid, src, np.asarray(jax.random.randint(jax.random.key(3), src.shape, 1,
                                                              vocab)))
    graphdef, state = nnx.split(model)

    @jax.jit  # one compile for the three runs
    def runs(state, src, junk, valid, dec):
        model = nnx.merge(graphdef, state)
        logits, weights = model.teacher_forced(src, dec)
        return (logits, weights, model((junk, dec, valid)),
                model.teacher_forced(src[1:2, :3], dec[1:2])[0])

    logits, weights, logits_junk, alone = (np.asarray(a) for a in runs(
        state, jnp.asarray(src), jnp.asarray(junk), jnp.asarray(valid), dec))
    assert np.all(weights[~np.broadcast_to(valid[:, None], weights.shape)] == 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    # Different padding content under an explicit mask: the same outputs.
    np.testing.assert_allclose(logits_junk, logits, atol=1e-5)
    # The shortest source alone, without padding, gives the same outputs as in the batch.
    np.testing.assert_allclose(alone, logits[1:2], atol=1e-5)
