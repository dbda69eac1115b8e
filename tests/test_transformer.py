"""Transformer blocks, layer stacks (scan, remat), GPT, encoder and encoder-decoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import tiny_config

from jaxdl import functional
from jaxdl.models import MODELS
from jaxdl.models.seq2seq_decoding import greedy_decode, greedy_decode_by_recompute
from jaxdl.models.transformer import TransformerBlock, gelu
from jaxdl.registry import ConfigError
from jaxdl.train import train_and_evaluate

TOKENS = jax.random.randint(jax.random.key(0), (2, 12), 0, 11)


def _gpt(**options):
    section = {"name": "gpt", "d_model": 32, "num_layers": 3, "num_heads": 4, **options}
    return MODELS.build(section, field="model", input_shape=(12,), num_classes=11,
                        rngs=nnx.Rngs(0))


def _logits_and_grads(model, x=TOKENS):
    graphdef, params, state = functional.split_model(model)

    @jax.jit
    def run(params):
        def loss(params):
            logits = functional.apply(graphdef, params, state, x)[0]
            return jnp.sum(logits * jnp.cos(logits)), logits

        return jax.value_and_grad(loss, has_aux=True)(params)

    (_, logits), grads = run(params)
    return logits, grads


@pytest.mark.parametrize("options", [dict(positional="rope", num_kv_heads=2),
                                     dict(positional="alibi", remat="dots")])
def test_scan_over_layers_equals_unrolled(options):
    logits_u, grads_u = _logits_and_grads(_gpt(scan_layers=False, **options))
    logits_s, grads_s = _logits_and_grads(_gpt(scan_layers=True, **options))
    np.testing.assert_allclose(logits_s, logits_u, atol=1e-5)
    # The scanned stack holds the unrolled layers' gradients stacked on a leading axis.
    unrolled = [grads_u["layers"]["blocks"][i] for i in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *unrolled)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4),
                 grads_s["layers"]["blocks"], stacked)
    np.testing.assert_allclose(grads_s["head"]["kernel"], grads_u["head"]["kernel"], atol=1e-4)


def test_remat_changes_memory_not_values():
    _, grads = _logits_and_grads(_gpt(scan_layers=True))
    _, grads_remat = _logits_and_grads(_gpt(scan_layers=True, remat="full"))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grads, grads_remat)


@pytest.mark.parametrize("attention", ["blockwise", "xla"])
def test_gpt_attention_implementations_agree(attention):
    logits, _ = _logits_and_grads(_gpt(positional="learned"))
    other = _gpt(positional="learned", attention=attention, block_size=4)
    np.testing.assert_allclose(_logits_and_grads(other)[0], logits, atol=1e-5)


def test_gpt_is_causal():
    model = _gpt(positional="sinusoidal")
    x2 = TOKENS.at[:, 7].set((TOKENS[:, 7] + 1) % 11)
    a, b = model(TOKENS), model(x2)
    np.testing.assert_allclose(a[:, :7], b[:, :7], atol=1e-6)
    assert np.abs(np.asarray(a[:, 7:] - b[:, 7:])).max() > 1e-4


def test_dropout_only_in_training():
    model = _gpt(dropout=0.5, scan_layers=True)
    graphdef, params, state = functional.split_model(model)

    @jax.jit
    def run(key):
        train = functional.apply(graphdef, params, state, TOKENS, train=True, rng=key)[0]
        return train, functional.apply(graphdef, params, state, TOKENS, train=False)[0]

    (a, eval_a), (b, eval_b) = run(jax.random.key(1)), run(jax.random.key(2))
    assert np.abs(np.asarray(a - b)).max() > 0.1
    np.testing.assert_array_equal(eval_a, eval_b)


def test_post_norm_block_outputs_are_normalized():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (2, 5, 16))
    post = TransformerBlock(16, 2, prenorm=False, rngs=nnx.Rngs(0))(x)
    np.testing.assert_allclose(post.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(post.std(-1), 1.0, atol=1e-3)
    pre_block = TransformerBlock(16, 2, prenorm=True, rngs=nnx.Rngs(0))
    pre = pre_block(x)
    # Pre-norm keeps the residual stream: h + attention(norm(h)) + mlp(norm(...)).
    h = x + pre_block.self_attention(pre_block.norm1(x), causal=False)
    expected = h + pre_block.mlp_out(jax.nn.gelu(pre_block.mlp_in(pre_block.norm2(h))))
    np.testing.assert_allclose(pre, expected, atol=1e-5)


def test_classifier_ignores_padding_tokens():
    section = {"name": "transformer_classifier", "d_model": 16, "num_heads": 2,
               "num_layers": 1, "pad_id": 0, "vocab_size": 11, "positional": "none"}
    model = MODELS.build(section, field="model", input_shape=(6,), num_classes=3,
                         rngs=nnx.Rngs(0))
    x = jnp.array([[3, 4, 5, 0, 0, 0]])
    padded, unpadded = nnx.jit(lambda m, x: (m(x), m(x[:, :3])))(model, x)
    # Same logits as the unpadded sequence: padding gets no attention and no pooling weight.
    np.testing.assert_allclose(padded, unpadded, atol=1e-5)
    assert padded.shape == (1, 3)


@pytest.mark.parametrize("key,value,match", [
    ("remat", "some", "model.remat='some'"),
    ("norm", "batchnorm", "model.norm='batchnorm'"),
    ("positional", "absolute", "model.positional='absolute'"),
    ("dtype", "float16", "model.dtype='float16'"),
])
def test_bad_options_name_the_field(key, value, match):
    with pytest.raises(ValueError, match=match):
        _gpt(**{key: value})


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="d_modl"):
        _gpt(d_modl=3)


def test_encoder_decoder_step_decoding_equals_recompute():
    model = MODELS.build({"name": "transformer_seq2seq", "d_model": 16, "num_layers": 1,
                          "num_heads": 2}, field="model", input_shape=(5,), num_classes=7,
                         rngs=nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    src = jax.random.randint(jax.random.key(3), (3, 5), 1, 7)

    @jax.jit
    def both(params):
        def apply_fn(src, dec_in):
            return functional.apply(graphdef, params, state, (src, dec_in))[0]

        step_fn, carry = functional.merge_model(graphdef, params, state).start_decoding(src)
        return (greedy_decode(step_fn, carry, 3, 5),
                greedy_decode_by_recompute(apply_fn, src, 5))

    stepped, recomputed = both(params)
    np.testing.assert_array_equal(stepped, recomputed)


@pytest.mark.slow
def test_encoder_decoder_learns_to_sort(tmp_path):
    """200 steps on sorting 8 digits: per-token accuracy above 0.7 (chance: about 0.1;
    measured 0.90 token / 0.36 whole-sequence accuracy)."""
    config = tiny_config()
    config.data = {"name": "sequence_task", "task": "sort", "length": 8, "num_train": 4000,
                   "num_eval": 256}
    config.model = {"name": "transformer_seq2seq", "d_model": 64, "num_layers": 2,
                    "num_heads": 4}
    config.loss = {"name": "seq2seq"}
    config.optimizer.learning_rate = 3e-3
    config.optimizer.warmup_steps = 20
    config.batch_size, config.eval_batch_size = 64, 256
    config.num_steps = config.eval_every = config.checkpoint_every = 200
    result = train_and_evaluate(config, tmp_path)
    assert result.eval_metrics["accuracy"] > 0.7, result.eval_metrics
    assert result.eval_metrics["sequence_accuracy"] > 0.05, result.eval_metrics


def test_mlp_gelu_is_recomputed_and_equals_jax_gelu():
    """The MLP's GELU (tanh form) is ``jax.nn.gelu`` under ``jax.checkpoint``: same values and
    gradients, and a ``checkpoint`` (remat) in its jaxpr, so only its input is saved."""
    x = jax.random.normal(jax.random.key(0), (4, 33)) * 3
    np.testing.assert_allclose(gelu(x), jax.nn.gelu(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(gelu(x) ** 2))(x),
                               jax.grad(lambda x: jnp.sum(jax.nn.gelu(x) ** 2))(x),
                               rtol=1e-5, atol=1e-6)
    names = {eqn.primitive.name for eqn in jax.make_jaxpr(gelu)(x).jaxpr.eqns}
    assert any(name.startswith(("checkpoint", "remat")) for name in names), names
