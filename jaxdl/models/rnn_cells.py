"""Recurrent cells: vanilla RNN, LSTM, GRU and their layer-normalised variants, and the
variational dropout masks; :mod:`jaxdl.models.rnn` runs them over time.


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
  recurrent matmul, the *same* at every time step (``keep`` in
  :func:`jaxdl.models.rnn.scan_cell`). Inverted scaling, so the expected masked value is
  unchanged; identity without a ``dropout_key``.
"""

from __future__ import annotations

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

    @classmethod
    def activate_residuals(cls, carry: Carry, pre: jax.Array) -> tuple[Carry, Any]:
        """``activate`` plus what :meth:`activate_backward` needs (hidden-linear cells)."""
        return cls.activate(carry, pre), (carry, pre)

    @classmethod
    def activate_backward(cls, residuals: Any, d_new: Carry) -> tuple[Carry, jax.Array]:
        """Cotangents ``(d carry_{t-1}, d pre_t)`` of ``activate`` from ``d carry_t``; by
        default autodiff of ``activate`` (recomputed from the saved ``(carry, pre)``)."""
        return jax.vjp(cls.activate, *residuals)[1](d_new)

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
    def gate_values(pre: jax.Array) -> jax.Array:
        """``pre [..., 4H] -> [..., 4, H]``: ``s(i), s(f), tanh(g), s(o)``, all four from one
        ``tanh`` over the whole block, ``s(x) = (1 + tanh(x / 2)) / 2``. On XLA:CPU this ran
        ~5x faster than a sigmoid or tanh per gate slice (``experiments.bench.rnn``)."""
        a = pre.reshape(*pre.shape[:-1], 4, pre.shape[-1] // 4)
        half = jnp.asarray([[0.5], [0.5], [1.0], [0.5]], a.dtype)  # scale per gate
        return jnp.tanh(a * half) * half + (1.0 - half)

    @classmethod
    def activate(cls, carry: Carry, pre: jax.Array) -> Carry:
        """The new carry from the old one and the gates' pre-activations ``[batch, 4H]``."""
        return cls.activate_residuals(carry, pre)[0]

    @classmethod
    def activate_residuals(cls, carry: Carry, pre: jax.Array):
        """``activate`` and the residuals ``(gates [batch, 4, H], c_{t-1}, tanh(c_t))``."""
        a = cls.gate_values(pre)
        i, f, g, o = a[..., 0, :], a[..., 1, :], a[..., 2, :], a[..., 3, :]
        c = f * carry[1] + i * g
        tanh_c = jnp.tanh(c)
        return (o * tanh_c, c), (a, carry[1], tanh_c)

    @staticmethod
    def activate_backward(residuals, d_new: Carry):
        """Hand-written LSTM backward of one step (only multiplies and adds):
        ``dc = dc_t + dh_t s(o) (1 - tanh^2 c_t)``, ``d pre = [dc g s'(i), dc c_{t-1} s'(f),
        dc s(i) tanh'(g), dh_t tanh(c_t) s'(o)]``, ``dc_{t-1} = dc s(f)``; ``dh_{t-1}`` gets
        nothing here (it comes through the recurrent matmul)."""
        a, c_prev, tanh_c = residuals
        dh, dc = d_new
        i, f, g, o = a[..., 0, :], a[..., 1, :], a[..., 2, :], a[..., 3, :]
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        d_pre = jnp.stack([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                           dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)], axis=-2)
        return (jnp.zeros_like(dh), dc * f), d_pre.reshape(*d_pre.shape[:-2], -1)

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
