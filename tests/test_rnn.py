"""Recurrent cells against their equations in float64 numpy; bidirectional layers, masking,
recurrent generation against the parallel forward, and a short real training run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models import MODELS
from jaxdl.models.rnn import RecurrentLayer, make_cell, scan_cell
from tests.helpers import tiny_config

B, T, D, H = 3, 5, 4, 6


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_params(cell):
    return tuple(np.asarray(p[...], np.float64)
                 for p in (cell.input_kernel, cell.recurrent_kernel, cell.bias))


def _numpy_run(kind, cell, x):
    """The cell's equations, written out gate by gate, in float64."""
    wx, wh, b = _numpy_params(cell)
    h, c = np.zeros((x.shape[0], H)), np.zeros((x.shape[0], H))
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t].astype(np.float64)
        if kind == "rnn":
            h = np.tanh(xt @ wx + h @ wh + b)
        elif kind == "lstm":
            gate = [xt @ wx[:, k * H:(k + 1) * H] + h @ wh[:, k * H:(k + 1) * H]
                    + b[k * H:(k + 1) * H] for k in range(4)]
            i, f, o = _sigmoid(gate[0]), _sigmoid(gate[1]), _sigmoid(gate[3])
            c = f * c + i * np.tanh(gate[2])
            h = o * np.tanh(c)
        else:  # gru
            def part(w, k):
                return w[..., k * H:(k + 1) * H]
            z = _sigmoid(xt @ part(wx, 0) + h @ part(wh, 0) + part(b, 0))
            r = _sigmoid(xt @ part(wx, 1) + h @ part(wh, 1) + part(b, 1))
            n = np.tanh(xt @ part(wx, 2) + (r * h) @ part(wh, 2) + part(b, 2))
            h = (1 - z) * h + z * n
        outs.append(h)
    return np.stack(outs, 1)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_matches_numpy_equations(kind):
    cell = make_cell(kind, D, H, rngs=nnx.Rngs(0))
    cell.bias[...] = jax.random.normal(jax.random.key(1), cell.bias.shape)  # not the init zeros
    x = np.asarray(jax.random.normal(jax.random.key(2), (B, T, D)))
    out, _ = scan_cell(cell, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), _numpy_run(kind, cell, x), atol=2e-5)
    # One direct cell call equals the first scanned step.
    _, h1 = cell(cell.initial_carry(B), jnp.asarray(x[:, 0]))
    np.testing.assert_allclose(np.asarray(h1), np.asarray(out[:, 0]), atol=1e-6)


def test_lstm_forget_bias_starts_at_one():
    cell = make_cell("lstm", D, H, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(cell.bias[...]).reshape(4, H).sum(1), [0, H, 0, 0])


def _lengths_mask(lengths, seq):
    return jnp.arange(seq)[None, :] < jnp.asarray(lengths)[:, None]


def test_bidirectional_backward_half_is_forward_on_reversed_sequence():
    layer = RecurrentLayer("gru", D, H, rngs=nnx.Rngs(0), bidirectional=True)
    x = jax.random.normal(jax.random.key(3), (B, T, D))
    out, _ = layer(x)
    assert out.shape == (B, T, 2 * H)
    reversed_run, _ = scan_cell(layer.backward_cell, x[:, ::-1])
    np.testing.assert_allclose(out[..., H:], reversed_run[:, ::-1], atol=1e-6)
    forward_run, _ = scan_cell(layer.forward_cell, x)
    np.testing.assert_allclose(out[..., :H], forward_run, atol=1e-6)
    # With padding, the backward half starts at each sequence's own last valid step.
    lengths = [5, 3, 1]
    out, _ = layer(x, mask=_lengths_mask(lengths, T))
    for b, n in enumerate(lengths):
        alone, _ = scan_cell(layer.backward_cell, x[b:b + 1, :n][:, ::-1])
        np.testing.assert_allclose(out[b, :n, H:], alone[0, ::-1], atol=1e-6)
        np.testing.assert_array_equal(out[b, n:], 0.0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_masked_positions_change_no_valid_output_or_gradient(bidirectional):
    layer = RecurrentLayer("lstm", D, H, rngs=nnx.Rngs(0), bidirectional=bidirectional)
    graphdef, params = nnx.split(layer)
    mask = _lengths_mask([5, 2, 4], T)
    x = jax.random.normal(jax.random.key(4), (B, T, D))
    noise = jax.random.normal(jax.random.key(5), (B, T, D)) * 10.0
    x_other = jnp.where(mask[..., None], x, noise)  # same valid steps, different padding

    def loss(params, x):
        out, _ = nnx.merge(graphdef, params)(x, mask=mask)
        return jnp.sum(jnp.where(mask[..., None], jnp.sin(out), 0.0)), out

    (l1, out1), (gp1, gx1) = jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x)
    (l2, out2), (gp2, _) = jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x_other)
    np.testing.assert_allclose(np.where(mask[..., None], out1, 0),
                               np.where(mask[..., None], out2, 0), atol=1e-6)
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), gp1, gp2)
    np.testing.assert_array_equal(np.where(mask[..., None], 0.0, gx1), 0.0)
    assert float(jnp.abs(gx1).sum()) > 0.0


def test_generate_greedy_equals_parallel_argmax():
    model = MODELS.build({"name": "rnn_lm", "cell": "lstm", "hidden": 16, "num_layers": 2,
                          "embed_dim": 8}, field="model", input_shape=(T,), num_classes=11,
                          rngs=nnx.Rngs(0))
    prompt = jax.random.randint(jax.random.key(6), (2, 3), 0, 11)
    graphdef, state = nnx.split(model)

    @jax.jit
    def generate(state, prompt, key):
        return nnx.merge(graphdef, state).generate(prompt, 6, key, temperature=1e-6)

    tokens = generate(state, prompt, jax.random.key(7))
    assert tokens.shape == (2, 6) and tokens.dtype == jnp.int32
    full = jnp.concatenate([prompt, tokens[:, :-1]], axis=1)
    expected = model(full).argmax(-1)[:, 2:]
    np.testing.assert_array_equal(tokens, expected)


def test_bad_cell_name_is_a_clear_error():
    with pytest.raises(ValueError, match="model.cell='lsmt'"):
        MODELS.build({"name": "rnn_lm", "cell": "lsmt"}, field="model", input_shape=(8,),
                     num_classes=5, rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_char_lstm_learns_tinyshakespeare(tmp_path):
    from jaxdl.train import train_and_evaluate

    config = tiny_config(**{"data": {"name": "tinyshakespeare", "seq_len": 32,
                                     "eval_fraction": 0.02},
                            "model": {"name": "rnn_lm", "cell": "lstm", "hidden": 64,
                                      "embed_dim": 16},
                            "num_steps": 100, "batch_size": 32, "eval_batch_size": 256,
                            "eval_every": 0, "optimizer.learning_rate": 1e-2,
                            "optimizer.clip_norm": 1.0})
    result = train_and_evaluate(config, tmp_path)
    # Uniform guessing over 65 characters is ln 65 = 4.17 nats; unigram frequencies ~3.3.
    assert result.eval_metrics["loss"] < 3.0, result.eval_metrics


@pytest.mark.parametrize("kind,reverse", [("lstm", False), ("rnn", True)])
def test_hand_written_backward_pass_equals_autodiff(kind, reverse):
    """Unmasked RNN/LSTM scans use a custom VJP; an all-ones mask takes the plain autodiff
    path, so the two gradients must agree."""
    cell = make_cell(kind, D, H, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(cell)
    x = jax.random.normal(jax.random.key(8), (B, T, D))
    h0 = jax.tree.map(lambda a: a + 0.3, cell.initial_carry(B))
    ones = jnp.ones((B, T), bool)

    def loss(params, x, h0, mask):
        out, final = scan_cell(nnx.merge(graphdef, params), x, mask=mask, carry=h0,
                               reverse=reverse)
        return jnp.sum(jnp.sin(out)) + sum(jnp.sum(f ** 2) for f in jax.tree.leaves(final))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    fast, reference = grad(params, x, h0, None), grad(params, x, h0, ones)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 fast, reference)
    np.testing.assert_allclose(loss(params, x, h0, None), loss(params, x, h0, ones), rtol=1e-6)


def test_gradient_vs_lag_analysis_orders_lags(tmp_path):
    """With tiny recurrent weights the gradient must fall steeply with the lag; a reversed
    lag axis would show the opposite."""
    from experiments.analyses.sequence_models import gradient_vs_lag

    train = tiny_config(**{"data": {"name": "recall", "length": 6, "num_symbols": 4,
                                    "num_train": 64, "num_eval": 32},
                           "model": {"name": "rnn_classifier", "cell": "rnn", "hidden": 8,
                                     "embed_dim": 4, "recurrent_init": "small_normal"},
                           "num_steps": 2, "optimizer.warmup_steps": 0,
                           "batch_size": 16, "eval_batch_size": 32,
                           "eval_every": 0, "checkpoint_every": 0})
    results = gradient_vs_lag(workdir=tmp_path, seed=0, train=train, cells=("rnn",),
                              num_examples=32)
    curve = np.asarray(results["curves"]["rnn init"])
    assert curve.shape == (6,) and curve[0] > 0
    assert curve[-1] < 1e-6 * curve[0]
    assert np.all(np.diff(np.log(curve)) < 0)
    assert (tmp_path / "gradient_vs_lag.png").exists()


@pytest.mark.parametrize("kind,options,masked", [
    ("lstm", {"bidirectional": True}, False), ("gru", {"bidirectional": True}, True),
    ("lstm", {"layer_norm": True}, True)])
def test_token_table_projection_equals_embedding_then_layer(kind, options, masked):
    """``embedding=`` gathers rows of ``cell.project(embedding)`` instead of projecting every
    embedded token: outputs, final carries and gradients (embedding and every parameter)
    must equal the layer run on ``embedding[tokens]`` (unmasked: the LSTM's hand-written
    backward; masked: the autodiff scan)."""
    vocab = 7  # <= batch * seq, so the table path is taken
    layer = RecurrentLayer(kind, D, H, rngs=nnx.Rngs(0), **options)
    graphdef, params = nnx.split(layer)
    embedding = jax.random.normal(jax.random.key(3), (vocab, D))
    tokens = jax.random.randint(jax.random.key(4), (B, T), 0, vocab)
    mask = (jnp.arange(T)[None, :] < jnp.asarray([T, T - 2, 1])[:, None]) if masked else None

    def loss(params, embedding, use_table):
        model = nnx.merge(graphdef, params)
        if use_table:
            out, final = model(tokens, embedding=embedding, mask=mask)
        else:
            out, final = model(jnp.take(embedding, tokens, axis=0), mask=mask)
        return jnp.sum(jnp.sin(out)) + sum(jnp.sum(f ** 2) for f in jax.tree.leaves(final))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
    (v_table, g_table), (v_ref, g_ref) = grad(params, embedding, True), grad(
        params, embedding, False)
    np.testing.assert_allclose(v_table, v_ref, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 g_table, g_ref)
