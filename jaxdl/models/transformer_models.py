"""Transformer models: GPT decoder, encoder classifier, encoder-decoder (all registered).

* ``gpt``: decoder-only language model (Radford et al., 2018/2019), ``x: int [batch, seq]
  -> logits [batch, seq, vocab]`` with a causal mask.
* ``transformer_classifier``: bidirectional encoder (Devlin et al., 2019 style),
  ``x: int [batch, seq] -> logits [batch, num_classes]`` by masked mean pooling.
* ``transformer_seq2seq``: encoder-decoder (Vaswani et al., 2017), ``(src: int [batch, s],
  decoder_input: int [batch, t]) -> logits [batch, t, vocab]``, with :meth:`encode` and
  :meth:`decode` for autoregressive decoding.

Common options: ``d_model``, ``num_layers``, ``num_heads``, ``num_kv_heads`` (GQA/MQA),
``mlp_ratio``, ``positional`` (none, sinusoidal, learned, rope, alibi), ``norm``
(layernorm, rmsnorm), ``prenorm``, ``attention`` (naive, blockwise, xla, linear),
``window`` (sliding window), ``block_size``, ``dropout``, ``scan_layers``, ``remat``
(none, full, dots, dots_no_batch) and ``dtype`` ("float32", or "bfloat16": bfloat16 matmul
operands accumulating in float32, parameters kept in float32).
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.positional import LearnedPositions, check_positional, sinusoidal_encoding
from jaxdl.models.registry import MODELS
from jaxdl.models.transformer import (
    LayerStack,
    TransformerBlock,
    check_choice,
    dropout,
    make_norm,
)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class TokenEmbedding(nnx.Module):
    """Token embedding plus the additive positional encoding (if any): ``int [b, t] ->
    [b, t, d_model]``. RoPE and ALiBi act inside attention, so they add nothing here."""

    def __init__(self, vocab_size: int, d_model: int, max_len: int, positional: str, *,
                 rngs: nnx.Rngs):
        self.positional = check_positional(positional)
        self.tokens = nnx.Embed(vocab_size, d_model, rngs=rngs,
                                embedding_init=nnx.initializers.normal(0.02))
        self.max_len = max_len
        self.learned = (LearnedPositions(max_len, d_model, rngs=rngs)
                        if positional == "learned" else None)

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        t = x.shape[1]
        if t > self.max_len and self.positional in ("learned", "sinusoidal"):
            raise ValueError(f"sequence length {t} exceeds the model's max_len={self.max_len}.")
        positions = jnp.arange(t) if positions is None else positions
        h = self.tokens(x)
        if self.learned is not None:
            h = h + self.learned(positions)
        elif self.positional == "sinusoidal":
            table = jnp.asarray(sinusoidal_encoding(self.max_len, h.shape[-1]))
            h = h + jnp.take(table, positions, axis=0)
        return h


def _block_options(d_model, num_heads, num_kv_heads, mlp_ratio, positional, norm, prenorm,
                   attention, window, block_size, dropout_rate, dtype, *, global_tokens=0,
                   attention_dropout=0.0) -> dict:
    check_choice(dtype, DTYPES, "model.dtype")
    if not 0.0 <= attention_dropout < 1.0:
        raise ValueError(f"model.attention_dropout={attention_dropout}: expected 0 <= value < 1.")
    return dict(d_model=d_model, num_heads=num_heads, num_kv_heads=num_kv_heads,
                mlp_ratio=mlp_ratio, prenorm=prenorm, norm=norm,
                positional=positional if positional in ("rope", "alibi") else "none",
                attention=attention, window=window, block_size=block_size,
                dropout_rate=dropout_rate, compute_dtype=DTYPES[dtype],
                global_tokens=global_tokens, attention_dropout=attention_dropout)


def _head(d_model: int, n_out: int, dtype: str, rngs: nnx.Rngs) -> nnx.Linear:
    low = dtype != "float32"
    return nnx.Linear(d_model, n_out, dtype=DTYPES[dtype] if low else None,
                      preferred_element_type=jnp.float32 if low else None, rngs=rngs)


def _dropout_keys(rngs: nnx.Rngs | None, train: bool, rate: float, n: int):
    if not train or rate == 0.0 or rngs is None:
        return [None] * n
    return list(jax.random.split(rngs.dropout(), n))


class GPT(nnx.Module):
    """Decoder-only transformer LM: ``x: int [batch, seq] -> logits [batch, seq, vocab]``.

    The stages are separate (:meth:`embed`, ``self.layers``, :meth:`logits`) and take
    explicit ``positions`` so a KV-cache decoder can reuse them token by token.
    """

    def __init__(self, vocab_size: int, max_len: int, *, d_model: int = 128,
                 num_layers: int = 4, num_heads: int = 4, num_kv_heads: int | None = None,
                 mlp_ratio: int = 4, positional: str = "learned", norm: str = "layernorm",
                 prenorm: bool = True, attention: str = "naive", window: int | None = None,
                 block_size: int = 128, dropout: float = 0.0, scan_layers: bool = False,
                 remat: str = "none", dtype: str = "float32", global_tokens: int = 0,
                 attention_dropout: float = 0.0, rngs: nnx.Rngs):
        options = _block_options(d_model, num_heads, num_kv_heads, mlp_ratio, positional, norm,
                                 prenorm, attention, window, block_size, dropout, dtype,
                                 global_tokens=global_tokens,
                                 attention_dropout=attention_dropout)
        self.dropout_rate, self.max_len = dropout, max_len
        self.key_rate = max(dropout, attention_dropout)  # draw keys if any dropout is on
        self.embedding = TokenEmbedding(vocab_size, d_model, max_len, positional, rngs=rngs)
        self.layers = LayerStack(functools.partial(TransformerBlock, **options), num_layers,
                                 scan_layers=scan_layers, remat=remat, rngs=rngs)
        self.final_norm = make_norm(norm, d_model, rngs) if prenorm else None
        self.head = _head(d_model, vocab_size, dtype, rngs)

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        return self.embedding(x, positions)

    def logits(self, h: jax.Array) -> jax.Array:
        h = self.final_norm(h) if self.final_norm is not None else h
        return self.head(h).astype(jnp.float32)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        k_embed, k_layers = _dropout_keys(rngs, train, self.key_rate, 2)
        h = dropout(self.embed(x), self.dropout_rate, k_embed)
        return self.logits(self.layers(h, causal=True, dropout_key=k_layers))

    def attention_weights(self, x: jax.Array) -> jax.Array:
        """Self-attention weights ``[layers, batch, heads, seq, seq]`` (naive attention)."""
        return self.layers(self.embed(x), causal=True, return_weights=True)[1]


class TransformerClassifier(nnx.Module):
    """Bidirectional encoder: ``x: int [batch, seq] -> logits [batch, num_classes]``.

    Tokens equal to ``pad_id`` (if set) are masked out of attention and of the mean pool.
    """

    def __init__(self, vocab_size: int, max_len: int, num_classes: int, *, pad_id=None,
                 d_model: int = 64, num_layers: int = 2, num_heads: int = 4,
                 num_kv_heads: int | None = None, mlp_ratio: int = 4,
                 positional: str = "sinusoidal", norm: str = "layernorm", prenorm: bool = True,
                 attention: str = "naive", window: int | None = None, block_size: int = 128,
                 dropout: float = 0.0, scan_layers: bool = False, remat: str = "none",
                 dtype: str = "float32", global_tokens: int = 0,
                 attention_dropout: float = 0.0, rngs: nnx.Rngs):
        options = _block_options(d_model, num_heads, num_kv_heads, mlp_ratio, positional, norm,
                                 prenorm, attention, window, block_size, dropout, dtype,
                                 global_tokens=global_tokens,
                                 attention_dropout=attention_dropout)
        self.pad_id, self.dropout_rate = pad_id, dropout
        self.key_rate = max(dropout, attention_dropout)
        self.embedding = TokenEmbedding(vocab_size, d_model, max_len, positional, rngs=rngs)
        self.layers = LayerStack(functools.partial(TransformerBlock, **options), num_layers,
                                 scan_layers=scan_layers, remat=remat, rngs=rngs)
        self.final_norm = make_norm(norm, d_model, rngs)
        self.head = _head(d_model, num_classes, dtype, rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        keys = _dropout_keys(rngs, train, self.key_rate, 2)
        mask = None if self.pad_id is None else x != self.pad_id
        h = dropout(self.embedding(x), self.dropout_rate, keys[0])
        h = self.final_norm(self.layers(h, key_mask=mask, dropout_key=keys[1]))
        weight = jnp.ones(x.shape, h.dtype) if mask is None else mask.astype(h.dtype)
        pooled = (h * weight[..., None]).sum(1) / jnp.maximum(weight.sum(1), 1.0)[:, None]
        return self.head(pooled).astype(jnp.float32)


class EncoderDecoder(nnx.Module):
    """``(src: int [b, s], decoder_input: int [b, t]) -> logits [b, t, vocab]``."""

    def __init__(self, vocab_size: int, max_len: int, *, d_model: int = 64,
                 num_layers: int = 2, num_heads: int = 4, num_kv_heads: int | None = None,
                 mlp_ratio: int = 4, positional: str = "sinusoidal", norm: str = "layernorm",
                 prenorm: bool = True, attention: str = "naive", block_size: int = 128,
                 dropout: float = 0.0, scan_layers: bool = False, remat: str = "none",
                 dtype: str = "float32", global_tokens: int = 0,
                 attention_dropout: float = 0.0, rngs: nnx.Rngs):
        options = _block_options(d_model, num_heads, num_kv_heads, mlp_ratio, positional, norm,
                                 prenorm, attention, None, block_size, dropout, dtype,
                                 global_tokens=global_tokens,
                                 attention_dropout=attention_dropout)
        self.dropout_rate = dropout
        self.key_rate = max(dropout, attention_dropout)
        self.src_embedding = TokenEmbedding(vocab_size, d_model, max_len, positional, rngs=rngs)
        self.tgt_embedding = TokenEmbedding(vocab_size, d_model, max_len, positional, rngs=rngs)
        self.encoder = LayerStack(functools.partial(TransformerBlock, **options), num_layers,
                                  scan_layers=scan_layers, remat=remat, rngs=rngs)
        self.decoder = LayerStack(functools.partial(TransformerBlock, cross=True, **options),
                                  num_layers, scan_layers=scan_layers, remat=remat, rngs=rngs)
        self.encoder_norm = make_norm(norm, d_model, rngs) if prenorm else None
        self.final_norm = make_norm(norm, d_model, rngs) if prenorm else None
        self.head = _head(d_model, vocab_size, dtype, rngs)

    def encode(self, src: jax.Array, *, dropout_key=None) -> jax.Array:
        """``src: int [b, s] -> memory [b, s, d_model]``."""
        keys = [None, None] if dropout_key is None else list(jax.random.split(dropout_key))
        h = dropout(self.src_embedding(src), self.dropout_rate, keys[0])
        h = self.encoder(h, dropout_key=keys[1])
        return self.encoder_norm(h) if self.encoder_norm is not None else h

    def decode(self, decoder_input: jax.Array, memory: jax.Array, *,
               dropout_key=None) -> jax.Array:
        """``decoder_input: int [b, t]``, ``memory: [b, s, d] -> logits [b, t, vocab]``;
        position i sees decoder positions <= i and the whole source."""
        keys = [None, None] if dropout_key is None else list(jax.random.split(dropout_key))
        h = dropout(self.tgt_embedding(decoder_input), self.dropout_rate, keys[0])
        h = self.decoder(h, causal=True, memory=memory, dropout_key=keys[1])
        h = self.final_norm(h) if self.final_norm is not None else h
        return self.head(h).astype(jnp.float32)

    def start_decoding(self, src: jax.Array):
        """Next-token function for :mod:`jaxdl.models.seq2seq_decoding` (greedy, beam).

        The source is encoded once; the carry is ``(memory [b, s, d], tokens int [b,
        max_len], position int [b])`` and each step re-runs the (causal) decoder over the
        tokens so far, reading the logits at the current position. No KV cache yet: a step
        costs a full decoder pass over ``max_len`` positions.
        """
        b = src.shape[0]
        carry = (self.encode(src), jnp.zeros((b, self.tgt_embedding.max_len), jnp.int32),
                 jnp.zeros((b,), jnp.int32))

        def step_fn(carry, token):
            memory, tokens, position = carry
            rows = jnp.arange(tokens.shape[0])  # batch x beams under beam search
            tokens = tokens.at[rows, position].set(token)
            logits = self.decode(tokens, memory)[rows, position]
            return logits, (memory, tokens, position + 1)

        return step_fn, carry

    def __call__(self, inputs, *, train: bool = False, rngs: nnx.Rngs | None = None):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ValueError("model 'transformer_seq2seq' takes (src, decoder_input), two int "
                             "arrays [batch, length].")
        src, decoder_input = inputs
        k_enc, k_dec = _dropout_keys(rngs, train, self.key_rate, 2)
        return self.decode(decoder_input, self.encode(src, dropout_key=k_enc), dropout_key=k_dec)


def _options_of(cls):
    """Give a ``**options`` factory the keyword options of ``cls`` as its signature, so the
    registry rejects an unknown config key by name before anything is built."""

    def decorate(factory):
        own = [p for p in inspect.signature(factory).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        names = {p.name for p in own}
        extra = [p for p in inspect.signature(cls.__init__).parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in names | {"rngs"}]
        factory.__signature__ = inspect.Signature(own + extra)
        return factory

    return decorate


def _sequence_length(input_shape, name: str) -> int:
    if len(input_shape) != 1:
        raise ValueError(f"model {name!r} expects token sequences, input_shape (seq_len,); "
                         f"got {tuple(input_shape)}.")
    return int(input_shape[0])


@MODELS.register("gpt")
@_options_of(GPT)
def make_gpt(*, input_shape, num_classes: int, rngs: nnx.Rngs, max_len: int | None = None,
             **options) -> GPT:
    """``num_classes`` is the vocabulary; ``max_len`` defaults to the data's seq_len."""
    seq_len = _sequence_length(input_shape, "gpt")
    return GPT(num_classes, max_len or seq_len, rngs=rngs, **options)


@MODELS.register("transformer_classifier")
@_options_of(TransformerClassifier)
def make_transformer_classifier(*, input_shape, num_classes: int, rngs: nnx.Rngs,
                                vocab_size: int = 256, **options) -> TransformerClassifier:
    seq_len = _sequence_length(input_shape, "transformer_classifier")
    return TransformerClassifier(vocab_size, seq_len, num_classes, rngs=rngs, **options)


@MODELS.register("transformer_seq2seq")
@_options_of(EncoderDecoder)
def make_transformer_seq2seq(*, input_shape, num_classes: int, rngs: nnx.Rngs,
                             **options) -> EncoderDecoder:
    """Source and target share the ``num_classes`` token ids (``sequence_task`` data)."""
    seq_len = _sequence_length(input_shape, "transformer_seq2seq")
    return EncoderDecoder(num_classes, seq_len, rngs=rngs, **options)
