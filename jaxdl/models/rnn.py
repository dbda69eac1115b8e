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

Options (off by default):

* ``layer_norm``: layer-normalised LSTM/GRU cells (Ba, Kiros & Hinton, 2016): the input and
  the recurrent pre-activations are normalised separately, gate by gate, each with its own
  gain (their shifts fold into the shared bias); the LSTM also normalises ``c_t`` (gain and
  shift) before ``tanh`` in ``h_t = s(o) tanh(LN(c_t))``. See :class:`LayerNormLSTMCell`.
* ``dropout`` / ``recurrent_dropout``: variational dropout (Gal & Ghahramani, 2016): one
  keep-mask per sequence on the inputs ``x_t`` and one on the state ``h_{t-1}`` entering the
  recurrent matmul, the *same* at every time step (``keep`` in :func:`scan_cell`). Inverted
  scaling, so the expected masked value is unchanged; identity without a ``dropout_key``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.init import get_initializer
from jaxdl.models.dropout import dropout_mask

Carry = Any


class _Cell(nnx.Module):
    """Shared parameters: ``input_kernel [in, G*H]``, ``recurrent_kernel [H, G*H]``, ``bias``."""

    gates = 1
    hidden_linear = False  # step == activate(carry, xp + output(carry) @ weights()): fast path

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
    hidden_linear = True

    @staticmethod
    def activate(h: jax.Array, pre: jax.Array) -> jax.Array:
        return jnp.tanh(pre)

    @classmethod
    def step(cls, w_h: jax.Array, h: jax.Array, xp: jax.Array,
             keep: jax.Array | None = None) -> jax.Array:
        """``keep: [batch, hidden]`` multiplies ``h`` entering the matmul (recurrent dropout)."""
        return cls.activate(h, xp + _kept(h, keep) @ w_h)


class LSTMCell(_Cell):
    """LSTM cell; carry ``(h, c)``, each ``[batch, hidden]``; gate order ``i, f, g, o``."""

    gates = 4
    hidden_linear = True

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
    def step(cls, w_h: jax.Array, carry: Carry, xp: jax.Array,
             keep: jax.Array | None = None) -> Carry:
        return cls.activate(carry, xp + _kept(carry[0], keep) @ w_h)


class GRUCell(_Cell):
    """GRU cell (reset gate applied before the candidate's matmul, as in Cho et al., 2014);
    carry ``h: [batch, hidden]``; gate order ``z, r, n``."""

    gates = 3

    @staticmethod
    def step(w_h: jax.Array, h: jax.Array, xp: jax.Array,
             keep: jax.Array | None = None) -> jax.Array:
        hidden = h.shape[-1]
        hd = _kept(h, keep)
        x_z, x_r, x_n = jnp.split(xp, 3, axis=-1)
        zr = jax.nn.sigmoid(jnp.concatenate([x_z, x_r], -1) + hd @ w_h[:, : 2 * hidden])
        z, r = jnp.split(zr, 2, axis=-1)
        n = jnp.tanh(x_n + (r * hd) @ w_h[:, 2 * hidden:])
        return (1.0 - z) * h + z * n


def _kept(h: jax.Array, keep: jax.Array | None) -> jax.Array:
    return h if keep is None else h * keep


def gate_norm(x: jax.Array, gates: int, eps: float = 1e-5) -> jax.Array:
    """Layer normalisation without gain of each gate's block: ``x [..., gates * H]`` is seen
    as ``[..., gates, H]`` and every ``H``-vector gets zero mean and unit variance."""
    y = x.reshape(*x.shape[:-1], gates, x.shape[-1] // gates)
    mean = y.mean(-1, keepdims=True)
    var = jnp.square(y - mean).mean(-1, keepdims=True)
    return ((y - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape)


class _LayerNormCell:
    """Mixin: ``project`` normalises the input pre-activations per gate (gain
    ``input_gain``); ``weights()`` is a dict with the recurrent kernel and the gains."""

    hidden_linear = False

    def _add_norm_params(self):
        width = self.gates * self.hidden
        self.input_gain = nnx.Param(jnp.ones((width,), jnp.float32))
        self.recurrent_gain = nnx.Param(jnp.ones((width,), jnp.float32))

    def project(self, x: jax.Array) -> jax.Array:
        pre = gate_norm(x @ self.input_kernel[...], self.gates)
        return pre * self.input_gain[...] + self.bias[...]

    def weights(self) -> dict[str, jax.Array]:
        return {"kernel": self.recurrent_kernel[...], "gain": self.recurrent_gain[...]}


class LayerNormLSTMCell(_LayerNormCell, LSTMCell):
    """LSTM with layer normalisation (Ba et al., 2016), gates ``i, f, g, o``:
    ``pre = LN(x W_x) * g_x + LN(h_{t-1} W_h) * g_h + b`` (LN per gate),
    ``c_t = s(f) c_{t-1} + s(i) tanh(g)``, ``h_t = s(o) tanh(LN(c_t) * g_c + b_c)``."""

    def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs, **init):
        super().__init__(in_features, hidden, rngs=rngs, **init)
        self._add_norm_params()
        self.cell_gain = nnx.Param(jnp.ones((hidden,), jnp.float32))
        self.cell_shift = nnx.Param(jnp.zeros((hidden,), jnp.float32))

    def weights(self) -> dict[str, jax.Array]:
        return {**super().weights(), "cell_gain": self.cell_gain[...],
                "cell_shift": self.cell_shift[...]}

    @staticmethod
    def step(w: dict, carry: Carry, xp: jax.Array, keep: jax.Array | None = None) -> Carry:
        pre = xp + gate_norm(_kept(carry[0], keep) @ w["kernel"], 4) * w["gain"]
        i, f, g, o = jnp.split(pre, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
        c_norm = gate_norm(c, 1) * w["cell_gain"] + w["cell_shift"]
        return jax.nn.sigmoid(o) * jnp.tanh(c_norm), c


class LayerNormGRUCell(_LayerNormCell, GRUCell):
    """GRU with layer normalisation (Ba et al., 2016), gates ``z, r, n``:
    ``[z, r] = s(LN(x W_x)_{zr} g_x + LN(h W_{h,zr}) g_h + b)``,
    ``n = tanh(LN(x W_x)_n g_x + LN((r * h) W_{h,n}) g_h + b_n)``,
    ``h_t = (1 - z) h_{t-1} + z n`` (LN per gate)."""

    def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs, **init):
        super().__init__(in_features, hidden, rngs=rngs, **init)
        self._add_norm_params()

    @staticmethod
    def step(w: dict, h: jax.Array, xp: jax.Array, keep: jax.Array | None = None) -> jax.Array:
        hidden = h.shape[-1]
        hd = _kept(h, keep)
        kernel, gain = w["kernel"], w["gain"]
        zr_h = gate_norm(hd @ kernel[:, : 2 * hidden], 2) * gain[: 2 * hidden]
        z, r = jnp.split(jax.nn.sigmoid(xp[:, : 2 * hidden] + zr_h), 2, axis=-1)
        n_h = gate_norm((r * hd) @ kernel[:, 2 * hidden:], 1) * gain[2 * hidden:]
        n = jnp.tanh(xp[:, 2 * hidden:] + n_h)
        return (1.0 - z) * h + z * n


CELLS = {"rnn": SimpleRNNCell, "lstm": LSTMCell, "gru": GRUCell}
LAYER_NORM_CELLS = {"lstm": LayerNormLSTMCell, "gru": LayerNormGRUCell}


def make_cell(kind: str, in_features: int, hidden: int, *, rngs: nnx.Rngs,
              layer_norm: bool = False, **init) -> _Cell:
    """A cell by name (``"rnn" | "lstm" | "gru"``); ValueError naming ``model.cell`` otherwise.
    ``layer_norm=True`` gives the layer-normalised LSTM/GRU."""
    if kind not in CELLS:
        raise ValueError(f"model.cell={kind!r}: expected one of {sorted(CELLS)}.")
    if not isinstance(layer_norm, bool):
        raise ValueError(f"model.layer_norm={layer_norm!r}: expected True or False.")
    if layer_norm:
        if kind not in LAYER_NORM_CELLS:
            raise ValueError(f"model.layer_norm=True needs model.cell in "
                             f"{sorted(LAYER_NORM_CELLS)}; got model.cell={kind!r}.")
        return LAYER_NORM_CELLS[kind](in_features, hidden, rngs=rngs, **init)
    return CELLS[kind](in_features, hidden, rngs=rngs, **init)


def variational_masks(key: jax.Array, batch: int, in_features: int, hidden: int, *,
                      dropout: float, recurrent_dropout: float, dtype=jnp.float32):
    """One keep-mask per sequence (Gal & Ghahramani, 2016), reused at every time step:
    ``(input_keep [batch, in_features] | None, state_keep [batch, hidden] | None)``, entries
    0 or ``1 / (1 - rate)``; None where the rate is 0."""
    k_in, k_state = jax.random.split(key)
    input_keep = (dropout_mask(k_in, dropout, (batch, in_features), dtype)
                  if dropout > 0 else None)
    state_keep = (dropout_mask(k_state, recurrent_dropout, (batch, hidden), dtype)
                  if recurrent_dropout > 0 else None)
    return input_keep, state_keep


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
