"""Recurrent encoder-decoder with attention, registered as ``rnn_seq2seq``.

The encoder is a (bidirectional) recurrent layer over the embedded source; its outputs
``memory: [batch, src_len, enc_dim]`` are what the decoder attends to. The decoder is one
recurrent cell stepped over the target, with one of two attentions:

* ``"bahdanau"`` (additive; Bahdanau, Cho & Bengio, 2015): scores from the *previous* state,
  ``e_ti = v . tanh(W_q s_{t-1} + W_k m_i)``; the context ``c_t`` joins the input of the
  step, ``s_t = cell(s_{t-1}, [emb(y_{t-1}); c_t])``; logits from ``[s_t; c_t]``.
* ``"luong"`` (multiplicative, "general" score; Luong, Pham & Manning, 2015): scores from the
  *new* state, ``e_ti = s_t . W m_i``; attentional vector ``a_t = tanh(W_c [c_t; s_t])`` gives
  the logits and is fed to the next step's input ("input feeding").

Call convention (shared with other encoder-decoders, see ``jaxdl.train.sequence_objectives``):
``model((src, decoder_input)) -> logits [batch, tgt_len, vocab]`` with teacher forcing.

Source padding: a ``src_mask: bool [batch, S]`` (False at padding; or the ``pad_id`` option,
``src_mask = src != pad_id``) masks the encoder's recurrence (padding never enters a valid
state) and gives padded positions exactly zero attention weight, so the output for a padded
batch equals the output for each source alone. ``model((src, decoder_input, src_mask))``
passes it explicitly.
For decoding, :meth:`RNNSeq2Seq.start_decoding` returns a next-token function for
:mod:`jaxdl.models.seq2seq_decoding` (greedy, beam search).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.attention import MASK_VALUE
from jaxdl.models.registry import MODELS
from jaxdl.models.rnn import RecurrentLayer, make_cell

ATTENTIONS = ("bahdanau", "luong")


class RNNSeq2Seq(nnx.Module):
    """``(src int [batch, S], decoder_input int [batch, T]) -> logits [batch, T, vocab]``."""

    def __init__(self, vocab: int, *, rngs: nnx.Rngs, cell: str = "gru", hidden: int = 64,
                 embed_dim: int = 32, attention: str = "bahdanau", attention_dim: int = 64,
                 bidirectional: bool = True, pad_id: int | None = None):
        if attention not in ATTENTIONS:
            raise ValueError(f"model.attention={attention!r}: expected one of {ATTENTIONS}.")
        self.attention = attention
        self.embed = nnx.Embed(vocab, embed_dim, rngs=rngs)
        self.encoder = RecurrentLayer(cell, embed_dim, hidden, rngs=rngs,
                                      bidirectional=bidirectional)
        enc_dim = self.encoder.out_features
        self.bridge = nnx.Linear(enc_dim, hidden, rngs=rngs)
        feed = enc_dim if attention == "bahdanau" else hidden
        self.decoder_cell = make_cell(cell, embed_dim + feed, hidden, rngs=rngs)
        if attention == "bahdanau":
            self.query = nnx.Linear(hidden, attention_dim, use_bias=False, rngs=rngs)
            self.key = nnx.Linear(enc_dim, attention_dim, rngs=rngs)
            self.score = nnx.Linear(attention_dim, 1, use_bias=False, rngs=rngs)
            self.out = nnx.Linear(hidden + enc_dim, vocab, rngs=rngs)
        else:
            self.key = nnx.Linear(enc_dim, hidden, use_bias=False, rngs=rngs)
            self.combine = nnx.Linear(enc_dim + hidden, hidden, use_bias=False, rngs=rngs)
            self.out = nnx.Linear(hidden, vocab, rngs=rngs)
        self.hidden = hidden
        self.pad_id = pad_id

    # ------------------------------------------------------------------ encoder
    def source_mask(self, src: jax.Array, src_mask: jax.Array | None = None):
        """``src_mask`` as bool, else ``src != pad_id`` with the ``pad_id`` option, else None."""
        if src_mask is not None:
            if src_mask.shape != src.shape:
                raise ValueError(f"src_mask has shape {src_mask.shape}; expected the source's "
                                 f"shape {src.shape}.")
            return src_mask.astype(bool)
        return None if self.pad_id is None else src != self.pad_id

    def encode(self, src: jax.Array, src_mask: jax.Array | None = None) -> dict[str, jax.Array]:
        """``src [batch, S]`` -> memory ``{"values": [batch, S, enc_dim], "keys": [batch, S,
        k]}`` plus the decoder's initial state ``"init": [batch, hidden]`` (and ``"mask":
        bool [batch, S]`` when the source is masked, see :meth:`source_mask`)."""
        src_mask = self.source_mask(src, src_mask)
        values, finals = self.encoder(self.embed(src), mask=src_mask)
        # Summary for the decoder's start: the forward half's last step and the backward
        # half's first step (each has then read the whole source).
        half = self.encoder.forward_cell.hidden
        summary = values[:, -1]
        if self.encoder.backward_cell is not None:
            summary = jnp.concatenate([values[:, -1, :half], values[:, 0, half:]], -1)
        if src_mask is not None:  # the final carries: the last *valid* step of each direction
            cells = [self.encoder.forward_cell, self.encoder.backward_cell]
            finals = finals if self.encoder.backward_cell is not None else (finals,)
            summary = jnp.concatenate([c.output(f) for c, f in zip(cells, finals)], -1)
        memory = {"values": values, "keys": self.key(values),
                  "init": jnp.tanh(self.bridge(summary))}
        if src_mask is not None:
            memory["mask"] = src_mask
        return memory

    def initial_carry(self, memory: dict[str, jax.Array]):
        """Decoder carry: ``(cell carry, fed vector)``; the cell's hidden state starts at
        ``memory["init"]`` (an LSTM's cell state at zero)."""
        batch = memory["init"].shape[0]
        cell_carry = self.decoder_cell.initial_carry(batch)
        cell_carry = ((memory["init"], cell_carry[1]) if isinstance(cell_carry, tuple)
                      else memory["init"])
        feed_dim = memory["values"].shape[-1] if self.attention == "bahdanau" else self.hidden
        return cell_carry, jnp.zeros((batch, feed_dim), memory["values"].dtype)

    # ------------------------------------------------------------------ decoder
    def _attend(self, scores: jax.Array, values: jax.Array, mask: jax.Array | None = None):
        if mask is not None:  # padded source positions: weight exactly 0
            scores = jnp.where(mask, scores, MASK_VALUE)
        weights = jax.nn.softmax(scores, axis=-1)  # [batch, S]
        return jnp.einsum("bs,bsd->bd", weights, values), weights

    def decode_step(self, memory, carry, token: jax.Array):
        """One target step: ``token int [batch]`` -> ``(logits [batch, vocab], carry,
        attention weights [batch, S])``."""
        cell, w_h = self.decoder_cell, self.decoder_cell.weights()
        cell_carry, fed = carry
        emb = self.embed(token)
        if self.attention == "bahdanau":
            query = self.query(cell.output(cell_carry))[:, None, :]
            scores = self.score(jnp.tanh(query + memory["keys"]))[..., 0]
            context, weights = self._attend(scores, memory["values"], memory.get("mask"))
            cell_carry = cell.step(w_h, cell_carry, cell.project(jnp.concatenate([emb, context],
                                                                                  -1)))
            state = cell.output(cell_carry)
            return self.out(jnp.concatenate([state, context], -1)), (cell_carry, context), weights
        cell_carry = cell.step(w_h, cell_carry, cell.project(jnp.concatenate([emb, fed], -1)))
        state = cell.output(cell_carry)
        scores = jnp.einsum("bh,bsh->bs", state, memory["keys"])
        context, weights = self._attend(scores, memory["values"], memory.get("mask"))
        attentional = jnp.tanh(self.combine(jnp.concatenate([context, state], -1)))
        return self.out(attentional), (cell_carry, attentional), weights

    def teacher_forced(self, src: jax.Array, decoder_input: jax.Array,
                       src_mask: jax.Array | None = None):
        """``-> (logits [batch, T, vocab], attention weights [batch, T, S])``."""
        memory = self.encode(src, src_mask)

        def body(carry, token):
            logits, carry, weights = self.decode_step(memory, carry, token)
            return carry, (logits, weights)

        _, (logits, weights) = jax.lax.scan(body, self.initial_carry(memory), decoder_input.T)
        return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(weights, 0, 1)

    def __call__(self, inputs, *, train: bool = False, rngs: nnx.Rngs | None = None):
        del train, rngs
        src, decoder_input, *src_mask = inputs
        return self.teacher_forced(src, decoder_input, *src_mask)[0]

    def start_decoding(self, src: jax.Array, src_mask: jax.Array | None = None):
        """``(step_fn, carry)`` for :mod:`jaxdl.models.seq2seq_decoding`; the encoder memory
        (with the source mask) travels in the carry so beam search can reorder it with the
        beams."""
        memory = self.encode(src, src_mask)

        def step_fn(carry, token):
            memory, decoder_carry = carry
            logits, decoder_carry, _ = self.decode_step(memory, decoder_carry, token)
            return logits, (memory, decoder_carry)

        return step_fn, (memory, self.initial_carry(memory))


@MODELS.register("rnn_seq2seq")
def make_rnn_seq2seq(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                     cell: str = "gru", hidden: int = 64, embed_dim: int = 32,
                     attention: str = "bahdanau", attention_dim: int = 64,
                     bidirectional: bool = True, pad_id: int | None = None) -> RNNSeq2Seq:
    """Options: ``cell`` ("rnn" | "lstm" | "gru"), ``hidden``, ``embed_dim``, ``attention``
    ("bahdanau" | "luong"), ``attention_dim`` (Bahdanau only), ``bidirectional`` encoder,
    ``pad_id`` (source token treated as padding: masked in the encoder and the attention).
    Source and target share the vocabulary of ``num_classes`` tokens (BOS included)."""
    if len(input_shape) != 1:
        raise ValueError(f"model.name='rnn_seq2seq' expects token sequences, input_shape "
                         f"(length,); got {tuple(input_shape)}.")
    if pad_id is not None and (isinstance(pad_id, bool) or not isinstance(pad_id, int)
                               or not 0 <= pad_id < num_classes):
        raise ValueError(f"model.pad_id={pad_id!r}: expected None or a token id in "
                         f"[0, {num_classes}).")
    return RNNSeq2Seq(num_classes, rngs=rngs, cell=cell, hidden=hidden, embed_dim=embed_dim,
                      attention=attention, attention_dim=attention_dim,
                      bidirectional=bidirectional, pad_id=pad_id)
