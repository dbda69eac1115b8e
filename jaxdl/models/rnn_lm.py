"""Recurrent models built from :mod:`jaxdl.models.rnn`: a token language model and a
sequence classifier, registered as ``rnn_lm`` and ``rnn_classifier``.

* ``rnn_lm``: ``tokens int [batch, seq] -> logits [batch, seq, vocab]`` (next-token
  prediction, e.g. character-level Tiny Shakespeare as in Karpathy's char-rnn, 2015), with
  :meth:`RNNLanguageModel.generate` sampling autoregressively from the recurrent state.
  With ``stream_rows > 0`` it also trains by truncated backpropagation through time with the
  state carried across batches: the final recurrent state of each stream row is kept in a
  :class:`CarriedState` variable (model state, not a parameter, so the train step returns it
  and checkpoints hold it) and starts the next window of that row (Williams & Peng, 1990).
* ``rnn_classifier``: ``tokens int [batch, seq] -> logits [batch, num_classes]`` from the last
  hidden state (used by the gradient-vanishing study: recall the first token).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.registry import MODELS
from jaxdl.models.rnn import StackedRNN


def _check_tokens(input_shape: tuple[int, ...], model: str) -> None:
    if len(input_shape) != 1:
        raise ValueError(f"model.name={model!r} expects token sequences, input_shape (seq,); "
                         f"got input_shape {tuple(input_shape)}.")


class CarriedState(nnx.Variable):
    """Recurrent state carried from one training batch to the next (not trained)."""


class RNNLanguageModel(nnx.Module):
    """Embedding -> stacked recurrent layers -> linear head over the vocabulary."""

    def __init__(self, vocab: int, *, rngs: nnx.Rngs, cell: str = "lstm", hidden: int = 256,
                 num_layers: int = 1, embed_dim: int = 64, stream_rows: int = 0, **init):
        self.embed = nnx.Embed(vocab, embed_dim, rngs=rngs)
        self.rnn = StackedRNN(cell, embed_dim, hidden, num_layers, rngs=rngs, **init)
        self.head = nnx.Linear(self.rnn.out_features, vocab, rngs=rngs)
        self.stream_rows = stream_rows
        self.uses_dropout = bool(init.get("dropout") or init.get("recurrent_dropout"))
        if stream_rows:
            leaves = jax.tree.leaves(self._initial_carries(stream_rows))
            self.carried = CarriedState(jnp.stack(leaves))  # [num_leaves, rows, hidden]
            self.window_index = CarriedState(jnp.zeros((), jnp.int32))

    def _initial_carries(self, batch: int):
        return [layer.forward_cell.initial_carry(batch) for layer in self.rnn.layers]

    def __call__(self, tokens, *, train: bool = False, rngs: nnx.Rngs | None = None,
                 mask: jax.Array | None = None, carries=None):
        """``tokens [batch, seq] -> logits [batch, seq, vocab]``; a dict ``{"stream", "rows",
        "window"}`` runs :meth:`stream_window` instead. With ``train`` and ``rngs`` the
        variational (recurrent) dropout masks are drawn from ``rngs.dropout()``."""
        key = None
        if train and rngs is not None and self.uses_dropout:
            key = rngs.dropout()
        if isinstance(tokens, dict):
            return self.stream_window(tokens["stream"], tokens["rows"], tokens["window"],
                                      dropout_key=key)
        return self.logits_and_carries(tokens, mask=mask, carries=carries, dropout_key=key)[0]

    def stream_window(self, stream: jax.Array, rows: jax.Array, window: int, *,
                      dropout_key: jax.Array | None = None):
        """One truncated-BPTT window of every stream.

        Args:
          stream: int ``[batch, L]``, whole streams (``batch == stream_rows``, any order).
          rows: int ``[batch]``, which stream each batch row is.
          window: characters per step; step k reads ``stream[:, k w : (k + 1) w]`` starting
            from the state stream ``rows`` ended step k - 1 with (zeros when k wraps to 0).
        Returns ``(logits [batch, window, vocab], start)``; ``start`` is where the window
        begins, for slicing the targets.
        """
        if not self.stream_rows or stream.shape[0] != self.stream_rows:
            raise ValueError(f"model.stream_rows={self.stream_rows}: expected the number of "
                             f"streams in a batch, {stream.shape[0]} (data.stream_rows and "
                             "batch_size).")
        index = self.window_index[...]
        start = index * window
        x = jax.lax.dynamic_slice_in_dim(stream, start, window, axis=1)
        stored = jnp.where(index == 0, 0.0, self.carried[...][:, rows])
        treedef = jax.tree.structure(self._initial_carries(1))
        logits, finals = self.logits_and_carries(x, carries=jax.tree.unflatten(treedef,
                                                                               list(stored)),
                                                 dropout_key=dropout_key)
        final = jax.lax.stop_gradient(jnp.stack(jax.tree.leaves(finals)))
        self.carried[...] = self.carried[...].at[:, rows].set(final)
        self.window_index[...] = (index + 1) % (stream.shape[1] // window)
        return logits, start

    def logits_and_carries(self, tokens: jax.Array, *, mask=None, carries=None,
                           dropout_key: jax.Array | None = None):
        """``tokens [batch, seq]`` -> ``(logits [batch, seq, vocab], per-layer final carries)``."""
        h, finals = self.rnn(tokens, mask=mask, carries=carries, dropout_key=dropout_key,
                             embedding=self.embed.embedding[...])
        return self.head(h), finals

    def generate(self, prompt: jax.Array, num_tokens: int, key: jax.Array, *,
                 temperature: float = 1.0) -> jax.Array:
        """Sample ``num_tokens`` tokens after ``prompt: int [batch, p]`` (p >= 1).

        The prompt runs through the layers once; then each new token is one recurrent step
        per layer (no recomputation). ``temperature -> 0`` approaches greedy decoding.
        Returns int32 ``[batch, num_tokens]``.
        """
        logits, carries = self.logits_and_carries(prompt)
        cells = [layer.forward_cell for layer in self.rnn.layers]
        weights = [c.weights() for c in cells]

        def body(state, step_key):
            carries, last_logits = state
            token = jax.random.categorical(step_key, last_logits / temperature)
            h = self.embed(token)
            new_carries = []
            for cell, w, carry in zip(cells, weights, carries):
                carry = cell.step(w, carry, cell.project(h))
                h = cell.output(carry)
                new_carries.append(carry)
            return (new_carries, self.head(h)), token.astype(jnp.int32)

        keys = jax.random.split(key, num_tokens)
        _, tokens = jax.lax.scan(body, (carries, logits[:, -1]), keys)
        return tokens.T


@MODELS.register("rnn_lm")
def make_rnn_lm(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                cell: str = "lstm", hidden: int = 256, num_layers: int = 1,
                embed_dim: int = 64, kernel_init: str = "glorot_uniform",
                recurrent_init: str = "orthogonal", stream_rows: int = 0,
                unroll: int = 1, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                layer_norm: bool = False) -> RNNLanguageModel:
    """Options: ``cell`` ("rnn" | "lstm" | "gru"), ``hidden``, ``num_layers``, ``embed_dim``,
    ``kernel_init``, ``recurrent_init`` (names from ``jaxdl.init.INITIALIZERS``),
    ``stream_rows`` (> 0: carry state across batches, see :meth:`RNNLanguageModel.stream_window`;
    use with data ``tinyshakespeare_streams`` and loss ``tbptt_language_model``), ``unroll``
    (time steps per scan iteration: speed only), ``dropout`` / ``recurrent_dropout``
    (variational dropout on each layer's inputs / recurrent state, Gal & Ghahramani, 2016),
    ``layer_norm`` (layer-normalised LSTM/GRU cells, Ba et al., 2016)."""
    _check_tokens(input_shape, "rnn_lm")
    if isinstance(stream_rows, bool) or not isinstance(stream_rows, int) or stream_rows < 0:
        raise ValueError(f"model.stream_rows={stream_rows!r}: expected an integer >= 0.")
    return RNNLanguageModel(num_classes, rngs=rngs, cell=cell, hidden=hidden,
                            num_layers=num_layers, embed_dim=embed_dim, stream_rows=stream_rows,
                            kernel_init=kernel_init, recurrent_init=recurrent_init,
                            unroll=unroll, dropout=dropout, recurrent_dropout=recurrent_dropout,
                            layer_norm=layer_norm)


class RNNClassifier(nnx.Module):
    """Embedding -> stacked recurrent layers -> the last step's hidden state -> linear head."""

    def __init__(self, vocab: int, num_classes: int, *, rngs: nnx.Rngs, cell: str = "lstm",
                 hidden: int = 64, num_layers: int = 1, embed_dim: int = 16, **init):
        self.embed = nnx.Embed(vocab, embed_dim, rngs=rngs)
        self.rnn = StackedRNN(cell, embed_dim, hidden, num_layers, rngs=rngs, **init)
        self.head = nnx.Linear(self.rnn.out_features, num_classes, rngs=rngs)

    def from_embeddings(self, e: jax.Array) -> jax.Array:
        """``e: [batch, seq, embed_dim] -> logits [batch, num_classes]`` (for input gradients)."""
        h, _ = self.rnn(e)
        return self.head(h[:, -1])

    def __call__(self, tokens: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        del train, rngs
        return self.from_embeddings(self.embed(tokens))


@MODELS.register("rnn_classifier")
def make_rnn_classifier(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                        vocab: int = 0, cell: str = "lstm", hidden: int = 64,
                        num_layers: int = 1, embed_dim: int = 16,
                        kernel_init: str = "glorot_uniform",
                        recurrent_init: str = "orthogonal") -> RNNClassifier:
    """Options as ``rnn_lm``; ``vocab`` is the input vocabulary (0: same as num_classes)."""
    _check_tokens(input_shape, "rnn_classifier")
    return RNNClassifier(vocab or num_classes, num_classes, rngs=rngs, cell=cell,
                         hidden=hidden, num_layers=num_layers, embed_dim=embed_dim,
                         kernel_init=kernel_init, recurrent_init=recurrent_init)
