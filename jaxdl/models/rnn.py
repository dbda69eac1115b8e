"""Recurrent layers: run a cell of :mod:`jaxdl.models.rnn_cells` over time with ``lax.scan``
(masking, reversal, variational dropout, a hand-written backward for the recurrent matmul),
stacked and bidirectional. Shapes: ``x: [batch, seq, in]``, hidden ``[batch, hidden]``.
Token inputs with an ``embedding`` table take their input projection from the projected
table (:func:`lookup_tokens`: one gather instead of a matmul over every token).

The cells, their equations and the options (``layer_norm``, ``dropout``,
``recurrent_dropout``) are documented in :mod:`jaxdl.models.rnn_cells`; their names are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.rnn_cells import (  # noqa: F401  (re-exported)
    CELLS,
    LAYER_NORM_CELLS,
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    SimpleRNNCell,
    _Cell,
    _kept,
    gate_norm,
    make_cell,
    variational_masks,
)

Carry = Any


def scan_cell(cell: _Cell, x: jax.Array, *, mask: jax.Array | None = None,
              carry: Carry | None = None, reverse: bool = False,
              unroll: int = 1, keep: jax.Array | None = None) -> tuple[jax.Array, Carry]:
    """Run ``cell`` over time with ``lax.scan``.

    Args:
      x: ``[batch, seq, in]``.
      mask: optional bool ``[batch, seq]``; masked steps keep the carry and output zeros.
      carry: initial carry (zeros by default).
      reverse: scan from the last step to the first (outputs stay in input order).
      unroll: time steps per loop iteration (``lax.scan``'s ``unroll``; same result).
      keep: optional ``[batch, hidden]`` recurrent-dropout mask multiplying ``h_{t-1}``
        where it enters the recurrent matmul, the same at every step (see
        :func:`variational_masks`).

    Returns:
      ``(outputs [batch, seq, hidden], final_carry)``.
    """
    return scan_projected(cell, jnp.swapaxes(cell.project(x), 0, 1), mask=mask, carry=carry,
                          reverse=reverse, unroll=unroll, keep=keep)


def lookup_tokens(cell: _Cell, embedding: jax.Array, tokens: jax.Array):
    """``(table [vocab, G*H], tokens.T [seq, batch])`` with ``table = cell.project(embedding)``:
    ``table[tokens.T]`` equals ``cell.project(embedding[tokens])`` time-major (``project``
    works row by row). For a small vocabulary the gather (and its scatter-add gradient)
    replaces the ``[batch*seq, in] x [in, G*H]`` matmul and its two backward matmuls;
    :func:`scan_projected` does it step by step inside the loop when it can.
    ``tokens: int [batch, seq]``."""
    return cell.project(embedding), tokens.T


def scan_projected(cell: _Cell, projected: jax.Array, *, mask: jax.Array | None = None,
                   carry: Carry | None = None, reverse: bool = False, unroll: int = 1,
                   keep: jax.Array | None = None) -> tuple[jax.Array, Carry]:
    """:func:`scan_cell` from time-major projected inputs ``[seq, batch, G*H]`` (the
    output of ``cell.project``) or a pair ``(table, tokens)`` from :func:`lookup_tokens`
    (the unmasked hidden-linear scan then reads ``table[tokens[t]]`` inside its loop, never
    materialising the ``[seq, batch, G*H]`` inputs); returns
    ``(outputs [batch, seq, hidden], final_carry)``."""
    table = None
    if isinstance(projected, tuple):
        table, projected = projected
        if mask is not None or not cell.hidden_linear:
            projected, table = jnp.take(table, projected, axis=0), None
    batch, dtype = projected.shape[1], projected.dtype if table is None else table.dtype
    carry = cell.initial_carry(batch, dtype) if carry is None else carry
    w_h, step, output = cell.weights(), cell.step, cell.output

    def body(c, xp):
        new = step(w_h, c, xp, keep)
        return new, output(new)

    def masked_body(c, inputs):
        xp, m = inputs
        new = step(w_h, c, xp, keep)
        new = jax.tree.map(lambda n, o: jnp.where(m[:, None], n, o), new, c)
        return new, output(new) * m[:, None].astype(xp.dtype)

    if mask is None and cell.hidden_linear:
        xs = projected[::-1] if reverse else projected
        carry, outputs = _scan_hidden_linear(cell, w_h, carry, xs, keep, table)
        outputs = outputs[::-1] if reverse else outputs
    elif mask is None:
        carry, outputs = jax.lax.scan(body, carry, projected, reverse=reverse, unroll=unroll)
    else:
        inputs = (projected, jnp.swapaxes(mask.astype(bool), 0, 1))
        carry, outputs = jax.lax.scan(masked_body, carry, inputs, reverse=reverse,
                                      unroll=unroll)
    return jnp.swapaxes(outputs, 0, 1), carry


def _scan_hidden_linear(cell, w_h: jax.Array, carry: Carry, xs: jax.Array,
                        keep: jax.Array | None = None, table: jax.Array | None = None):
    """``lax.scan`` of a cell whose step is ``activate(carry, x_t + output(carry) @ w_h)``
    (vanilla RNN, LSTM), with a hand-written backward pass. With a recurrent-dropout mask
    ``keep [batch, H]`` the matmul reads ``(output(carry) * keep) @ w_h`` instead.

    Autodiff of a scan adds each step's ``h_{t-1}^T dpre_t`` to the weight gradient inside
    the backward loop (a read-modify-write of the whole ``[H, G*H]`` matrix per step); here
    the loop only carries ``d carry`` and the weight gradient is one matmul over all steps
    afterwards, ``H_prev^T dPre`` (the batching PyTorch/cuDNN's LSTM backward also does).
    The step's own derivative is the cell's ``activate_backward`` (hand-written for the
    LSTM) from the residuals its ``activate_residuals`` saved; ``h_{t-1}`` is not saved but
    read from the outputs shifted by one step.
    ``xs: [seq, batch, G*H]``, or int ``[seq, batch]`` rows of ``table [vocab, G*H]``;
    returns ``(final carry, outputs [seq, batch, H])``.
    """
    output = cell.output

    def forward(w_h, carry, xs, keep, table):
        def body(c, x):
            x = x if table is None else jnp.take(table, x, axis=0)
            new, res = cell.activate_residuals(c, x + _kept(output(c), keep) @ w_h)
            return new, (output(new), res)

        final, (outputs, res) = jax.lax.scan(body, carry, xs)
        return (final, outputs), (w_h, output(carry), outputs, res, keep,
                                  None if table is None else (xs, table.shape))

    def backward(residuals, cotangents):
        w_h, h_first, outputs, res, keep, lookup = residuals
        d_final, d_outputs = cotangents
        w_t = w_h.T  # once, outside the loop

        def body(d_carry, inputs):
            r, d_out = inputs
            # output() only selects part of the carry: its transpose needs no primal value.
            d_new = jax.tree.map(jnp.add, d_carry, jax.vjp(output, d_carry)[1](d_out)[0])
            d_prev, d_pre = cell.activate_backward(r, d_new)
            d_h = jax.vjp(output, d_prev)[1](_kept(d_pre @ w_t, keep))[0]
            return jax.tree.map(jnp.add, d_prev, d_h), d_pre

        d_carry, d_pres = jax.lax.scan(body, d_final, (res, d_outputs), reverse=True)
        h_prev = jnp.concatenate([h_first[None], outputs[:-1]], axis=0)
        d_w = jnp.einsum("tbh,tbg->hg", _kept(h_prev, keep), d_pres)
        d_keep = None if keep is None else jnp.zeros_like(keep)  # a sampled constant
        if lookup is None:
            return d_w, d_carry, d_pres, d_keep, None
        tokens, shape = lookup  # the gather's transpose: a scatter-add of the rows
        d_table = jnp.zeros(shape, d_pres.dtype).at[tokens].add(d_pres)
        return d_w, d_carry, None, d_keep, d_table

    @jax.custom_vjp
    def run(w_h, carry, xs, keep, table):
        return forward(w_h, carry, xs, keep, table)[0]

    run.defvjp(forward, backward)
    return run(w_h, carry, xs, keep, table)


class RecurrentLayer(nnx.Module):
    """One recurrent layer, optionally bidirectional (Schuster & Paliwal, 1997).

    ``x: [batch, seq, in] -> [batch, seq, hidden]`` (``2 * hidden`` when bidirectional: the
    forward half, then the backward half, which reads the sequence from its last valid step).
    """

    def __init__(self, cell: str, in_features: int, hidden: int, *, rngs: nnx.Rngs,
                 bidirectional: bool = False, unroll: int = 1, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, **init):
        if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"model.unroll={unroll!r}: expected an integer >= 1.")
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"model.{name}={rate!r}: expected 0 <= value < 1.")
        self.unroll, self.in_features, self.hidden = unroll, in_features, hidden
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.forward_cell = make_cell(cell, in_features, hidden, rngs=rngs, **init)
        self.backward_cell = (make_cell(cell, in_features, hidden, rngs=rngs, **init)
                              if bidirectional else None)
        self.out_features = hidden * (2 if bidirectional else 1)

    def _run(self, cell, x, direction: int, dropout_key, embedding=None, **kwargs):
        keep = input_keep = None
        batch = x.shape[0]
        if dropout_key is not None and (self.dropout or self.recurrent_dropout):
            input_keep, keep = variational_masks(
                jax.random.fold_in(dropout_key, direction), batch, self.in_features,
                self.hidden, dropout=self.dropout, recurrent_dropout=self.recurrent_dropout,
                dtype=x.dtype if embedding is None else embedding.dtype)
        if embedding is not None and input_keep is None and embedding.shape[0] <= x.size:
            return scan_projected(cell, lookup_tokens(cell, embedding, x), unroll=self.unroll,
                                  keep=keep, **kwargs)
        if embedding is not None:
            x = jnp.take(embedding, x, axis=0)
        x = x if input_keep is None else x * input_keep[:, None, :]
        return scan_cell(cell, x, unroll=self.unroll, keep=keep, **kwargs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None,
                 carry: Carry | None = None, dropout_key: jax.Array | None = None,
                 embedding: jax.Array | None = None) -> tuple[jax.Array, Carry]:
        """Returns ``(outputs, final_carry)``; ``carry``/final carry are the forward cell's
        (a tuple ``(forward, backward)`` when bidirectional). ``dropout_key`` (training)
        draws the variational dropout masks; None (evaluation) applies none.
        ``embedding [vocab, in]``: ``x`` is then int tokens ``[batch, seq]`` whose inputs
        are the embedding's rows; without input dropout and when ``vocab <= batch * seq``
        they are projected through the table (:func:`lookup_tokens`)."""
        if self.backward_cell is None:
            return self._run(self.forward_cell, x, 0, dropout_key, embedding, mask=mask,
                             carry=carry)
        fwd_carry, bwd_carry = carry if carry is not None else (None, None)
        fwd, fwd_carry = self._run(self.forward_cell, x, 0, dropout_key, embedding, mask=mask,
                                   carry=fwd_carry)
        bwd, bwd_carry = self._run(self.backward_cell, x, 1, dropout_key, embedding, mask=mask,
                                   carry=bwd_carry, reverse=True)
        return jnp.concatenate([fwd, bwd], axis=-1), (fwd_carry, bwd_carry)


class StackedRNN(nnx.Module):
    """``num_layers`` recurrent layers, each feeding the next.

    ``x: [batch, seq, in] -> (outputs [batch, seq, out_features], carries: list per layer)``.
    """

    def __init__(self, cell: str, in_features: int, hidden: int, num_layers: int = 1, *,
                 rngs: nnx.Rngs, bidirectional: bool = False, unroll: int = 1, **init):
        """``init`` also carries ``dropout``, ``recurrent_dropout`` and ``layer_norm`` (every
        layer gets them)."""
        if num_layers < 1:
            raise ValueError(f"model.num_layers={num_layers}: expected >= 1.")
        layers = []
        for _ in range(num_layers):
            layers.append(RecurrentLayer(cell, in_features, hidden, rngs=rngs,
                                         bidirectional=bidirectional, unroll=unroll, **init))
            in_features = layers[-1].out_features
        self.layers = nnx.List(layers)
        self.out_features = in_features

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None,
                 carries: Sequence[Carry] | None = None, dropout_key: jax.Array | None = None,
                 embedding: jax.Array | None = None) -> tuple[jax.Array, list[Carry]]:
        """``embedding``: ``x`` is int tokens, embedded for the first layer (see
        :meth:`RecurrentLayer.__call__`)."""
        finals = []
        for i, layer in enumerate(self.layers):
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            x, final = layer(x, mask=mask, carry=None if carries is None else carries[i],
                             dropout_key=key, embedding=embedding if i == 0 else None)
            finals.append(final)
        return x, finals
