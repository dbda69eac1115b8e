"""Recurrent cells (vanilla RNN, LSTM, GRU) and the layers that run them with ``lax.scan``.

A cell splits its work in two: ``project`` applies the input weights to every time step at
once (one large matmul), and the static ``step(weights, carry, projected_x_t)`` applies the
recurrent weights inside the scan. Shapes: ``x: [batch, seq, in]``, hidden ``[batch, hidden]``.

* Vanilla RNN (Elman, 1990): ``h_t = tanh(x_t W_x + h_{t-1} W_h + b)``.
* LSTM (Hochreiter & Schmidhuber, 1997; forget gate Gers et al., 2000): gates
  ``i, f, g, o`` from ``x_t W_x + h_{t-1} W_h + b``; ``c_t = s(f) c_{t-1} + s(i) tanh(g)``,
  ``h_t = s(o) tanh(c_t)``. The forget bias starts at 1 (Jozefowicz et al., 2015).
* GRU (Cho et al., 2014): ``z = s(.)``, ``r = s(.)``,
  ``n = tanh(x_t W_xn + (r * h_{t-1}) W_hn + b_n)``, ``h_t = (1 - z) h_{t-1} + z n``.

Masking: ``mask: bool [batch, seq]``; at a masked step the carry passes through unchanged and
the output is zero, so padding never reaches valid positions (forwards or backwards). A
reversed scan over a right-padded batch therefore starts at each sequence's own last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.init import get_initializer

Carry = Any


class _Cell(nnx.Module):
    """Shared parameters: ``input_kernel [in, G*H]``, ``recurrent_kernel [H, G*H]``, ``bias``."""

    gates = 1

    def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs,
                 kernel_init: str = "glorot_uniform", recurrent_init: str = "orthogonal"):
        if hidden < 1 or in_features < 1:
            raise ValueError(f"model.hidden={hidden} and in_features={in_features}: expected "
                             ">= 1.")
        self.hidden = hidden
        width = self.gates * hidden
        k_init = get_initializer(kernel_init, argument="model.kernel_init")
        r_init = get_initializer(recurrent_init, argument="model.recurrent_init")
        self.input_kernel = nnx.Param(k_init(rngs.params(), (in_features, width)))
        # One orthogonal block per gate (Saxe et al., 2014), so every gate's map is norm-preserving.
        blocks = [r_init(rngs.params(), (hidden, hidden)) for _ in range(self.gates)]
        self.recurrent_kernel = nnx.Param(jnp.concatenate(blocks, axis=1))
        self.bias = nnx.Param(self.initial_bias())

    def initial_bias(self) -> jax.Array:
        return jnp.zeros((self.gates * self.hidden,), jnp.float32)

    def project(self, x: jax.Array) -> jax.Array:
        """``x: [..., in] -> [..., G*H]``: the input half of every gate, bias included."""
        return x @ self.input_kernel[...] + self.bias[...]

    def weights(self) -> jax.Array:
        return self.recurrent_kernel[...]

    def initial_carry(self, batch: int, dtype=jnp.float32) -> Carry:
        return jnp.zeros((batch, self.hidden), dtype)

    @staticmethod
    def output(carry: Carry) -> jax.Array:
        return carry

    def __call__(self, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
        """One time step: ``x: [batch, in]`` -> ``(new_carry, h: [batch, hidden])``."""
        carry = self.step(self.weights(), carry, self.project(x))
        return carry, self.output(carry)


class SimpleRNNCell(_Cell):
    """Elman RNN cell; carry ``h: [batch, hidden]``."""

    gates = 1

    @staticmethod
    def activate(h: jax.Array, pre: jax.Array) -> jax.Array:
        return jnp.tanh(pre)

    @classmethod
    def step(cls, w_h: jax.Array, h: jax.Array, xp: jax.Array) -> jax.Array:
        return cls.activate(h, xp + h @ w_h)


class LSTMCell(_Cell):
    """LSTM cell; carry ``(h, c)``, each ``[batch, hidden]``; gate order ``i, f, g, o``."""

    gates = 4

    def initial_bias(self) -> jax.Array:
        return jnp.zeros((4, self.hidden), jnp.float32).at[1].set(1.0).reshape(-1)

    def initial_carry(self, batch: int, dtype=jnp.float32) -> Carry:
        zeros = jnp.zeros((batch, self.hidden), dtype)
        return zeros, zeros

    @staticmethod
    def output(carry: Carry) -> jax.Array:
        return carry[0]

    @staticmethod
    def activate(carry: Carry, pre: jax.Array) -> Carry:
        """The new carry from the old one and the gates' pre-activations ``[batch, 4H]``."""
        i, f, g, o = jnp.split(pre, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    @classmethod
    def step(cls, w_h: jax.Array, carry: Carry, xp: jax.Array) -> Carry:
        return cls.activate(carry, xp + carry[0] @ w_h)


class GRUCell(_Cell):
    """GRU cell (reset gate applied before the candidate's matmul, as in Cho et al., 2014);
    carry ``h: [batch, hidden]``; gate order ``z, r, n``."""

    gates = 3

    @staticmethod
    def step(w_h: jax.Array, h: jax.Array, xp: jax.Array) -> jax.Array:
        hidden = h.shape[-1]
        x_z, x_r, x_n = jnp.split(xp, 3, axis=-1)
        zr = jax.nn.sigmoid(jnp.concatenate([x_z, x_r], -1) + h @ w_h[:, : 2 * hidden])
        z, r = jnp.split(zr, 2, axis=-1)
        n = jnp.tanh(x_n + (r * h) @ w_h[:, 2 * hidden:])
        return (1.0 - z) * h + z * n


CELLS = {"rnn": SimpleRNNCell, "lstm": LSTMCell, "gru": GRUCell}


def make_cell(kind: str, in_features: int, hidden: int, *, rngs: nnx.Rngs, **init) -> _Cell:
    """A cell by name (``"rnn" | "lstm" | "gru"``); ValueError naming ``model.cell`` otherwise."""
    if kind not in CELLS:
        raise ValueError(f"model.cell={kind!r}: expected one of {sorted(CELLS)}.")
    return CELLS[kind](in_features, hidden, rngs=rngs, **init)


def scan_cell(cell: _Cell, x: jax.Array, *, mask: jax.Array | None = None,
              carry: Carry | None = None, reverse: bool = False,
              unroll: int = 1) -> tuple[jax.Array, Carry]:
    """Run ``cell`` over time with ``lax.scan``.

    Args:
      x: ``[batch, seq, in]``.
      mask: optional bool ``[batch, seq]``; masked steps keep the carry and output zeros.
      carry: initial carry (zeros by default).
      reverse: scan from the last step to the first (outputs stay in input order).
      unroll: time steps per loop iteration (``lax.scan``'s ``unroll``; same result).

    Returns:
      ``(outputs [batch, seq, hidden], final_carry)``.
    """
    batch = x.shape[0]
    carry = cell.initial_carry(batch, x.dtype) if carry is None else carry
    projected = jnp.swapaxes(cell.project(x), 0, 1)  # [seq, batch, G*H]
    w_h, step, output = cell.weights(), cell.step, cell.output

    def body(c, xp):
        new = step(w_h, c, xp)
        return new, output(new)

    def masked_body(c, inputs):
        xp, m = inputs
        new = step(w_h, c, xp)
        new = jax.tree.map(lambda n, o: jnp.where(m[:, None], n, o), new, c)
        return new, output(new) * m[:, None].astype(xp.dtype)

    if mask is None and hasattr(cell, "activate"):
        xs = projected[::-1] if reverse else projected
        carry, outputs = _scan_hidden_linear(cell.activate, output, w_h, carry, xs)
        outputs = outputs[::-1] if reverse else outputs
    elif mask is None:
        carry, outputs = jax.lax.scan(body, carry, projected, reverse=reverse, unroll=unroll)
    else:
        inputs = (projected, jnp.swapaxes(mask.astype(bool), 0, 1))
        carry, outputs = jax.lax.scan(masked_body, carry, inputs, reverse=reverse,
                                      unroll=unroll)
    return jnp.swapaxes(outputs, 0, 1), carry


def _scan_hidden_linear(activate, output, w_h: jax.Array, carry: Carry, xs: jax.Array):
    """``lax.scan`` of a cell whose step is ``activate(carry, x_t + output(carry) @ w_h)``
    (vanilla RNN, LSTM), with a hand-written backward pass.

    Autodiff of a scan adds each step's ``h_{t-1}^T dpre_t`` to the weight gradient inside
    the backward loop (a read-modify-write of the whole ``[H, G*H]`` matrix per step); here
    the loop only carries ``d carry`` and the weight gradient is one matmul over all steps
    afterwards, ``H_prev^T dPre`` (the batching PyTorch/cuDNN's LSTM backward also does).
    ``xs: [seq, batch, G*H]``; returns ``(final carry, outputs [seq, batch, H])``.
    """

    def forward(w_h, carry, xs):
        def body(c, x):
            pre = x + output(c) @ w_h
            new = activate(c, pre)
            return new, (output(new), c, pre)

        final, (outputs, previous, pres) = jax.lax.scan(body, carry, xs)
        return (final, outputs), (w_h, previous, pres)

    def backward(residuals, cotangents):
        w_h, previous, pres = residuals
        d_final, d_outputs = cotangents

        def body(d_carry, inputs):
            c_prev, pre, d_out = inputs
            new, activate_vjp = jax.vjp(activate, c_prev, pre)
            d_new = jax.tree.map(jnp.add, d_carry, jax.vjp(output, new)[1](d_out)[0])
            d_prev, d_pre = activate_vjp(d_new)
            d_h = jax.vjp(output, c_prev)[1](d_pre @ w_h.T)[0]
            return jax.tree.map(jnp.add, d_prev, d_h), d_pre

        d_carry, d_pres = jax.lax.scan(body, d_final, (previous, pres, d_outputs), reverse=True)
        d_w = jnp.einsum("tbh,tbg->hg", output(previous), d_pres)
        return d_w, d_carry, d_pres

    @jax.custom_vjp
    def run(w_h, carry, xs):
        return forward(w_h, carry, xs)[0]

    run.defvjp(forward, backward)
    return run(w_h, carry, xs)


class RecurrentLayer(nnx.Module):
    """One recurrent layer, optionally bidirectional (Schuster & Paliwal, 1997).

    ``x: [batch, seq, in] -> [batch, seq, hidden]`` (``2 * hidden`` when bidirectional: the
    forward half, then the backward half, which reads the sequence from its last valid step).
    """

    def __init__(self, cell: str, in_features: int, hidden: int, *, rngs: nnx.Rngs,
                 bidirectional: bool = False, unroll: int = 1, **init):
        if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"model.unroll={unroll!r}: expected an integer >= 1.")
        self.unroll = unroll
        self.forward_cell = make_cell(cell, in_features, hidden, rngs=rngs, **init)
        self.backward_cell = (make_cell(cell, in_features, hidden, rngs=rngs, **init)
                              if bidirectional else None)
        self.out_features = hidden * (2 if bidirectional else 1)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None,
                 carry: Carry | None = None) -> tuple[jax.Array, Carry]:
        """Returns ``(outputs, final_carry)``; ``carry``/final carry are the forward cell's
        (a tuple ``(forward, backward)`` when bidirectional)."""
        if self.backward_cell is None:
            return scan_cell(self.forward_cell, x, mask=mask, carry=carry, unroll=self.unroll)
        fwd_carry, bwd_carry = carry if carry is not None else (None, None)
        fwd, fwd_carry = scan_cell(self.forward_cell, x, mask=mask, carry=fwd_carry,
                                   unroll=self.unroll)
        bwd, bwd_carry = scan_cell(self.backward_cell, x, mask=mask, carry=bwd_carry,
                                   reverse=True, unroll=self.unroll)
        return jnp.concatenate([fwd, bwd], axis=-1), (fwd_carry, bwd_carry)


class StackedRNN(nnx.Module):
    """``num_layers`` recurrent layers, each feeding the next.

    ``x: [batch, seq, in] -> (outputs [batch, seq, out_features], carries: list per layer)``.
    """

    def __init__(self, cell: str, in_features: int, hidden: int, num_layers: int = 1, *,
                 rngs: nnx.Rngs, bidirectional: bool = False, unroll: int = 1, **init):
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
                 carries: Sequence[Carry] | None = None) -> tuple[jax.Array, list[Carry]]:
        finals = []
        for i, layer in enumerate(self.layers):
            x, final = layer(x, mask=mask, carry=None if carries is None else carries[i])
            finals.append(final)
        return x, finals
