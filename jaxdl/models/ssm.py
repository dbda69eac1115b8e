"""State-space sequence layers: a diagonal linear SSM and a selective (input-dependent) SSM.

Both compute, per channel ``d`` and state ``n``, the linear recurrence
``h_t = a_t * h_{t-1} + b_t`` and read out ``y_t = sum_n C_t[n] h_t[d, n] + D[d] u_t[d]``.

* ``"diagonal"`` (S4D-Real, Gu, Gupta, Goel & Re, 2022): continuous ``A = -exp(a_log)``
  (init ``-(n+1)``), a learned step ``dt`` per channel, zero-order hold
  ``a = exp(dt A)``, ``b = (a - 1) / A * B u_t``: time-invariant, like LRU (Orvieto et al., 2023).
* ``"selective"`` (Mamba, Gu & Dao, 2023): ``dt_t = softplus(W_dt u_t)``, ``B_t = W_B u_t``,
  ``C_t = W_C u_t`` depend on the input, ``a_t = exp(dt_t A)``, ``b_t = dt_t B_t u_t``.

Training runs all steps at once with ``jax.lax.associative_scan`` over the operator
``(a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)`` (Blelloch, 1990): O(log T) depth instead of T
(``mode="sequential"`` is the plain ``lax.scan`` reference). Generation steps the same block
one token at a time with :meth:`SSMBlock.step`, carrying ``(conv window, h)``.

Block (after Mamba): ``x + W_out[(SSM(silu(conv(u)))) * silu(z)]`` with ``(u, z) = W_in
RMSNorm(x)`` and a short causal depthwise convolution over time.
Shapes: ``x: [batch, seq, d_model]``, states ``[batch, seq, d_inner, state_dim]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

KINDS = ("diagonal", "selective")
MODES = ("parallel", "sequential")


def _combine(left, right):
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def linear_recurrence(a: jax.Array, b: jax.Array, *, mode: str = "parallel",
                      h0: jax.Array | None = None) -> jax.Array:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` along axis 1 (``h_{-1} = h0`` or 0).

    Args:
      a, b: ``[batch, seq, ...]`` (``a`` broadcastable to ``b``).
      mode: "parallel" (associative scan) or "sequential" (``lax.scan``).
    Returns:
      ``h: [batch, seq, ...]``.
    """
    if mode not in MODES:
        raise ValueError(f"model.scan_mode={mode!r}: expected one of {MODES}.")
    a = jnp.broadcast_to(a, b.shape)
    if h0 is not None:
        b = b.at[:, 0].add(a[:, 0] * h0)
    if mode == "parallel":
        return jax.lax.associative_scan(_combine, (a, b), axis=1)[1]

    def body(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    _, hs = jax.lax.scan(body, jnp.zeros_like(b[:, 0]), (jnp.swapaxes(a, 0, 1),
                                                       jnp.swapaxes(b, 0, 1)))
    return jnp.swapaxes(hs, 0, 1)


class SSMBlock(nnx.Module):
    """A residual SSM block; ``kind`` is "diagonal" or "selective" (see module doc)."""

    def __init__(self, d_model: int, *, rngs: nnx.Rngs, kind: str = "selective",
                 state_dim: int = 16, expand: int = 2, conv_kernel: int = 4,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        if kind not in KINDS:
            raise ValueError(f"model.kind={kind!r}: expected one of {KINDS}.")
        for name, value in (("state_dim", state_dim), ("expand", expand),
                            ("conv_kernel", conv_kernel)):
            if value < 1:
                raise ValueError(f"model.{name}={value}: expected >= 1.")
        self.kind, inner = kind, expand * d_model
        self.norm = nnx.RMSNorm(d_model, rngs=rngs)
        self.in_proj = nnx.Linear(d_model, 2 * inner, use_bias=False, rngs=rngs)
        self.conv_weight = nnx.Param(jax.random.normal(rngs.params(), (conv_kernel, inner))
                                     / math.sqrt(conv_kernel))
        self.conv_bias = nnx.Param(jnp.zeros((inner,)))
        # S4D-Real initialization: A_n = -(n + 1), the same for every channel.
        self.a_log = nnx.Param(jnp.log(jnp.tile(jnp.arange(1, state_dim + 1, dtype=jnp.float32),
                                                (inner, 1))))
        # Step sizes log-uniform in [dt_min, dt_max] (Gu et al., 2022).
        log_dt = jax.random.uniform(rngs.params(), (inner,), minval=math.log(dt_min),
                                    maxval=math.log(dt_max))
        if kind == "selective":
            # softplus(bias) = dt at initialization: bias = log(exp(dt) - 1).
            self.dt_proj = nnx.Linear(inner, inner, rngs=rngs,
                                      bias_init=lambda *_: jnp.log(jnp.expm1(jnp.exp(log_dt))))
            self.bc_proj = nnx.Linear(inner, 2 * state_dim, use_bias=False, rngs=rngs)
        else:
            self.log_dt = nnx.Param(log_dt)
            self.b = nnx.Param(jnp.ones((inner, state_dim)))
            self.c = nnx.Param(jax.random.normal(rngs.params(), (inner, state_dim))
                               / math.sqrt(state_dim))
        self.d = nnx.Param(jnp.ones((inner,)))
        self.out_proj = nnx.Linear(inner, d_model, use_bias=False, rngs=rngs)

    def coefficients(self, u: jax.Array):
        """``u: [..., d_inner]`` -> ``(a, b, c)``: ``a, b: [..., d_inner, N]`` (``a`` may
        broadcast) and read-out ``c`` broadcastable to ``[..., d_inner, N]``."""
        a_cont = -jnp.exp(self.a_log[...])  # [d_inner, N]
        if self.kind == "selective":
            dt = jax.nn.softplus(self.dt_proj(u))  # [..., d_inner]
            b_t, c_t = jnp.split(self.bc_proj(u), 2, axis=-1)  # [..., N] each
            a = jnp.exp(dt[..., None] * a_cont)
            return a, (dt * u)[..., None] * b_t[..., None, :], c_t[..., None, :]
        dt = jnp.exp(self.log_dt[...])
        a = jnp.exp(dt[:, None] * a_cont)
        b_bar = (a - 1.0) / a_cont * self.b[...]
        return a, u[..., None] * b_bar, self.c[...]

    def _gate_in(self, x):
        return jnp.split(self.in_proj(self.norm(x)), 2, axis=-1)

    def _gate_out(self, x, h, c, u, z):
        y = (h * c).sum(-1) + self.d[...] * u
        return x + self.out_proj(y * jax.nn.silu(z))

    def __call__(self, x: jax.Array, *, mode: str = "parallel") -> jax.Array:
        """``x: [batch, seq, d_model] -> [batch, seq, d_model]``, all steps at once."""
        u, z = self._gate_in(x)
        k = self.conv_weight.shape[0]
        padded = jnp.pad(u, ((0, 0), (k - 1, 0), (0, 0)))
        w = self.conv_weight[...]
        u = sum(w[j] * padded[:, j:j + u.shape[1]] for j in range(k)) + self.conv_bias[...]
        u = jax.nn.silu(u)
        a, b, c = self.coefficients(u)
        h = linear_recurrence(a[None, None] if a.ndim == 2 else a, b, mode=mode)
        return self._gate_out(x, h, c, u, z)

    def initial_carry(self, batch: int, dtype=jnp.float32):
        """``(conv window [batch, k - 1, d_inner], h [batch, d_inner, N])``, zeros."""
        k, inner = self.conv_weight.shape
        return (jnp.zeros((batch, k - 1, inner), dtype),
                jnp.zeros((batch, inner, self.a_log.shape[1]), dtype))

    def step(self, carry, x_t: jax.Array):
        """Recurrent mode, one token: ``x_t: [batch, d_model]`` -> ``(carry, y_t)``."""
        window, h = carry
        u, z = self._gate_in(x_t)
        full = jnp.concatenate([window, u[:, None]], axis=1)  # [batch, k, d_inner]
        u = jax.nn.silu(jnp.einsum("bkd,kd->bd", full, self.conv_weight[...])
                        + self.conv_bias[...])
        a, b, c = self.coefficients(u)
        h = a * h + b
        return (full[:, 1:], h), self._gate_out(x_t, h, c, u, z)
