"""Recurrent layers: run a cell of :mod:`jaxdl.models.rnn_cells` over time with ``lax.scan``
(masking, reversal, variational dropout, a hand-written backward for the recurrent matmul),
stacked and bidirectional. Shapes: ``x: [batch, seq, in]``, hidden ``[batch, hidden]``.

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
    batch = x.shape[0]
    carry = cell.initial_carry(batch, x.dtype) if carry is None else carry
    projected = jnp.swapaxes(cell.project(x), 0, 1)  # [seq, batch, G*H]
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
        carry, outputs = _scan_hidden_linear(cell, w_h, carry, xs, keep)
        outputs = outputs[::-1] if reverse else outputs
    elif mask is None:
        carry, outputs = jax.lax.scan(body, carry, projected, reverse=reverse, unroll=unroll)
    else:
        inputs = (projected, jnp.swapaxes(mask.astype(bool), 0, 1))
        carry, outputs = jax.lax.scan(masked_body, carry, inputs, reverse=reverse,
                                      unroll=unroll)
    return jnp.swapaxes(outputs, 0, 1), carry


def _scan_hidden_linear(cell, w_h: jax.Array, carry: Carry, xs: jax.Array,
                        keep: jax.Array | None = None):
    """``lax.scan`` of a cell whose step is ``activate(carry, x_t + output(carry) @ w_h)``
    (vanilla RNN, LSTM), with a hand-written backward pass. With a recurrent-dropout mask
    ``keep [batch, H]`` the matmul reads ``(output(carry) * keep) @ w_h`` instead.

    Autodiff of a scan adds each step's ``h_{t-1}^T dpre_t`` to the weight gradient inside
    the backward loop (a read-modify-write of the whole ``[H, G*H]`` matrix per step); here
    the loop only carries ``d carry`` and the weight gradient is one matmul over all steps
    afterwards, ``H_prev^T dPre`` (the batching PyTorch/cuDNN's LSTM backward also does).
    ``xs: [seq, batch, G*H]``; returns ``(final carry, outputs [seq, batch, H])``.
    """
    activate, output = cell.activate, cell.output

    def forward(w_h, carry, xs, keep):
        def body(c, x):
            pre = x + _kept(output(c), keep) @ w_h
            new = activate(c, pre)
            return new, (output(new), c, pre)

        final, (outputs, previous, pres) = jax.lax.scan(body, carry, xs)
        return (final, outputs), (w_h, previous, pres, keep)

    def backward(residuals, cotangents):
        w_h, previous, pres, keep = residuals
        d_final, d_outputs = cotangents

        def body(d_carry, inputs):
            c_prev, pre, d_out = inputs
            new, activate_vjp = jax.vjp(activate, c_prev, pre)
            d_new = jax.tree.map(jnp.add, d_carry, jax.vjp(output, new)[1](d_out)[0])
            d_prev, d_pre = activate_vjp(d_new)
            d_h = jax.vjp(output, c_prev)[1](_kept(d_pre @ w_h.T, keep))[0]
            return jax.tree.map(jnp.add, d_prev, d_h), d_pre

        d_carry, d_pres = jax.lax.scan(body, d_final, (previous, pres, d_outputs), reverse=True)
        d_w = jnp.einsum("tbh,tbg->hg", _kept(output(previous), keep), d_pres)
        d_keep = None if keep is None else jnp.zeros_like(keep)  # a sampled constant
        return d_w, d_carry, d_pres, d_keep

    @jax.custom_vjp
    def run(w_h, carry, xs, keep):
        return forward(w_h, carry, xs, keep)[0]

    run.defvjp(forward, backward)
    return run(w_h, carry, xs, keep)


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

    def _run(self, cell, x, direction: int, dropout_key, **kwargs):
        keep = None
        if dropout_key is not None and (self.dropout or self.recurrent_dropout):
            input_keep, keep = variational_masks(
                jax.random.fold_in(dropout_key, direction), x.shape[0], self.in_features,
                self.hidden, dropout=self.dropout, recurrent_dropout=self.recurrent_dropout,
                dtype=x.dtype)
            x = x if input_keep is None else x * input_keep[:, None, :]
        return scan_cell(cell, x, unroll=self.unroll, keep=keep, **kwargs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None,
                 carry: Carry | None = None,
                 dropout_key: jax.Array | None = None) -> tuple[jax.Array, Carry]:
        """Returns ``(outputs, final_carry)``; ``carry``/final carry are the forward cell's
        (a tuple ``(forward, backward)`` when bidirectional). ``dropout_key`` (training)
        draws the variational dropout masks; None (evaluation) applies none."""
        if self.backward_cell is None:
            return self._run(self.forward_cell, x, 0, dropout_key, mask=mask, carry=carry)
        fwd_carry, bwd_carry = carry if carry is not None else (None, None)
        fwd, fwd_carry = self._run(self.forward_cell, x, 0, dropout_key, mask=mask,
                                   carry=fwd_carry)
        bwd, bwd_carry = self._run(self.backward_cell, x, 1, dropout_key, mask=mask,
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
                 carries: Sequence[Carry] | None = None,
                 dropout_key: jax.Array | None = None) -> tuple[jax.Array, list[Carry]]:
        finals = []
        for i, layer in enumerate(self.layers):
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            x, final = layer(x, mask=mask, carry=None if carries is None else carries[i],
                             dropout_key=key)
            finals.append(final)
        return x, finals
