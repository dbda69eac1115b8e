"""A tape-based reverse-mode autodiff engine in plain numpy, to set beside JAX.

Two ways to build an autodiff engine (Griewank & Walther, *Evaluating Derivatives*, 2008;
Baydin et al., "Automatic differentiation in machine learning: a survey", 2018):

* **Tape (dynamic, define-by-run).** Every primitive executed while a tape is active is
  appended to a list of ``(output, inputs, backward_fn)`` records, in execution order: a
  *Wengert list* (Wengert, 1964). The backward pass walks the list in reverse and applies
  each record's vector-Jacobian product, accumulating gradients into the inputs. Python
  control flow is free (the tape only sees the operations that actually ran) and debugging
  is ordinary stepping through code; the price is that the tape is rebuilt on every call,
  every intermediate is kept alive until ``backward``, and nothing is optimized across
  operations. PyTorch's autograd works this way; so does this module.
* **Graph (trace, then transform and compile).** The program is traced *once* with abstract
  values into an intermediate representation, and differentiation, batching and
  compilation are program transformations on that representation. JAX traces Python to a
  *jaxpr*, ``jax.grad`` rewrites the jaxpr (linearize + transpose), and ``jax.jit`` hands
  the whole program to XLA, which fuses operations and plans memory globally. Control flow
  must be staged (``lax.cond``, ``lax.scan``) because tracing sees no concrete values, but
  the compiled program is fast and can be rerun without retracing.

Both compute the same numbers: the tests check every primitive here against ``jax.grad``.

Usage::

    x = Tensor(2.0)
    with Tape():
        y = (x + 1.0) * (x + 1.0)
    backward(y)          # x.grad == 6.0

Shapes follow numpy broadcasting; gradients are summed over broadcast axes so that
``t.grad.shape == t.value.shape`` for every tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

ArrayLike = np.ndarray | float | int | Sequence[float]


class Tensor:
    """A float64 numpy value, its gradient (``None`` until :func:`backward`), and the tape
    that produced it (``None`` for leaves)."""

    # Make numpy defer ``ndarray @ Tensor`` (and +, -, *) to the reflected methods below
    # instead of treating the Tensor as an object scalar.
    __array_ufunc__ = None

    def __init__(self, value: ArrayLike, requires_grad: bool = True):
        self.value = np.array(value, dtype=np.float64)  # a copy: SGD updates it in place
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self.tape: Tape | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    def __repr__(self) -> str:
        return f"Tensor({self.value!r}, grad={self.grad!r})"

    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return sub(self, other)
    def __rsub__(self, other): return sub(other, self)
    def __mul__(self, other): return mul(self, other)
    def __rmul__(self, other): return mul(other, self)
    def __neg__(self): return mul(self, -1.0)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)


class Record(NamedTuple):
    """One Wengert-list entry: ``backward_fn(output_grad) -> one grad per input``."""

    output: Tensor
    inputs: tuple[Tensor, ...]
    backward_fn: Callable[[np.ndarray], tuple[np.ndarray, ...]]


_ACTIVE: list[Tape] = []  # the stack of tapes currently recording (innermost last)


class Tape:
    """Records the operations run inside ``with Tape() as tape:``; outside any tape the
    operations compute values only (like ``torch.no_grad``)."""

    def __init__(self):
        self.records: list[Record] = []

    def __enter__(self) -> Tape:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.remove(self)

    def backward(self, loss: Tensor) -> None:
        """Reverse sweep over this tape from the scalar ``loss`` (seed d loss / d loss = 1).

        Every tensor on the tape gets a fresh ``.grad`` (earlier values are overwritten, not
        accumulated); tensors the loss does not depend on get zeros.
        """
        if loss.value.size != 1:
            raise ValueError(f"loss: expected a scalar Tensor, got shape {loss.shape}")
        for record in self.records:
            for t in (record.output, *record.inputs):
                t.grad = None
        loss.grad = np.ones_like(loss.value)
        for record in reversed(self.records):
            out_grad = record.output.grad
            if out_grad is None:  # not upstream of the loss
                continue
            for t, g in zip(record.inputs, record.backward_fn(out_grad)):
                if not t.requires_grad:
                    continue
                g = _unbroadcast(g, t.shape)
                t.grad = g if t.grad is None else t.grad + g
        for record in self.records:
            for t in (record.output, *record.inputs):
                if t.grad is None and t.requires_grad:
                    t.grad = np.zeros_like(t.value)


def backward(loss: Tensor) -> None:
    """Backpropagate from ``loss`` through the tape that recorded it (see
    :meth:`Tape.backward`); ValueError if ``loss`` was computed outside a tape."""
    if not isinstance(loss, Tensor) or loss.tape is None:
        raise ValueError("loss: expected a Tensor computed inside `with Tape():`")
    loss.tape.backward(loss)


def _as_tensor(x: Tensor | ArrayLike) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x, requires_grad=False)


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes numpy broadcasting added or stretched to reach ``shape``:
    the adjoint of broadcasting is summation."""
    grad = np.asarray(grad, dtype=np.float64)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad.reshape(shape)


def _record(value: np.ndarray, inputs: tuple[Tensor, ...], backward_fn) -> Tensor:
    """Wrap ``value`` and append it to the innermost active tape if any input needs a grad."""
    needs_grad = any(t.requires_grad for t in inputs)
    out = Tensor(value, requires_grad=needs_grad)
    if _ACTIVE and needs_grad:
        tape = _ACTIVE[-1]
        tape.records.append(Record(out, inputs, backward_fn))
        out.tape = tape
    return out


def add(a: Tensor | ArrayLike, b: Tensor | ArrayLike) -> Tensor:
    """``a + b`` with broadcasting."""
    a, b = _as_tensor(a), _as_tensor(b)
    return _record(a.value + b.value, (a, b), lambda g: (g, g))


def sub(a: Tensor | ArrayLike, b: Tensor | ArrayLike) -> Tensor:
    """``a - b`` with broadcasting."""
    a, b = _as_tensor(a), _as_tensor(b)
    return _record(a.value - b.value, (a, b), lambda g: (g, -g))


def mul(a: Tensor | ArrayLike, b: Tensor | ArrayLike) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    a, b = _as_tensor(a), _as_tensor(b)
    return _record(a.value * b.value, (a, b), lambda g: (g * b.value, g * a.value))


def matmul(a: Tensor | ArrayLike, b: Tensor | ArrayLike) -> Tensor:
    """``a @ b`` for ``a: [n, k]`` or ``[k]`` and ``b: [k, m]`` or ``[k]`` (numpy rules)."""
    a, b = _as_tensor(a), _as_tensor(b)
    if a.value.ndim not in (1, 2) or b.value.ndim not in (1, 2):
        raise ValueError(f"matmul: expected 1-D or 2-D operands, got {a.shape} and {b.shape}")
    # Promote vectors to matrices so one pair of formulas covers every case.
    a2 = a.value.reshape(1, -1) if a.value.ndim == 1 else a.value
    b2 = b.value.reshape(-1, 1) if b.value.ndim == 1 else b.value
    if a2.shape[1] != b2.shape[0]:
        raise ValueError(f"matmul: inner dimensions differ, {a.shape} @ {b.shape}")
    value = a.value @ b.value

    def backward_fn(g):
        g2 = np.reshape(g, (a2.shape[0], b2.shape[1]))
        return (g2 @ b2.T).reshape(a.shape), (a2.T @ g2).reshape(b.shape)

    return _record(value, (a, b), backward_fn)


def tanh(x: Tensor | ArrayLike) -> Tensor:
    """Elementwise tanh; d tanh = 1 - tanh^2 reuses the forward value."""
    x = _as_tensor(x)
    y = np.tanh(x.value)
    return _record(y, (x,), lambda g: (g * (1.0 - y * y),))


def relu(x: Tensor | ArrayLike) -> Tensor:
    """Elementwise max(x, 0); the derivative at 0 is taken as 0, as in ``jax.nn.relu``."""
    x = _as_tensor(x)
    return _record(np.maximum(x.value, 0.0), (x,), lambda g: (g * (x.value > 0),))


def sum(x: Tensor | ArrayLike, axis: int | tuple[int, ...] | None = None,
        keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (all axes when None)."""
    x = _as_tensor(x)
    value = np.sum(x.value, axis=axis, keepdims=keepdims)

    def backward_fn(g):
        if axis is not None and not keepdims:  # re-insert the reduced axes, then broadcast
            g = np.expand_dims(g, axis)
        return (np.broadcast_to(g, x.shape),)

    return _record(value, (x,), backward_fn)


def mean(x: Tensor | ArrayLike, axis: int | tuple[int, ...] | None = None,
         keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes when None): a sum scaled by 1/count."""
    x = _as_tensor(x)
    total = sum(x, axis=axis, keepdims=keepdims)
    count = x.value.size // max(total.value.size, 1)
    return mul(total, 1.0 / count)


def log_softmax_cross_entropy(logits: Tensor, labels: np.ndarray) -> Tensor:
    """Mean softmax cross-entropy, fused into one record.

    ``logits: [batch, classes]``, ``labels: int [batch]`` -> scalar. Subtracting the row
    maximum before ``exp`` keeps the log-sum-exp finite for any logits, and the fused
    gradient ``(softmax - one_hot) / batch`` avoids differentiating through ``log(exp)``.
    """
    logits = _as_tensor(logits)
    labels = np.asarray(labels)
    if logits.value.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"labels: expected int [batch] for logits [batch, classes] "
                         f"{logits.shape}, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected integer class ids, got dtype {labels.dtype}")
    batch = logits.shape[0]
    shifted = logits.value - logits.value.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(batch), labels].mean()

    def backward_fn(g):
        d_logits = np.exp(log_probs)
        d_logits[np.arange(batch), labels] -= 1.0
        return (g * d_logits / batch,)

    return _record(np.asarray(loss), (logits,), backward_fn)


def train_tiny_mlp(x: np.ndarray, y: np.ndarray, hidden: int = 32, steps: int = 300,
                   lr: float = 0.5, seed: int = 0) -> list[float]:
    """Full-batch SGD on a 2-layer tanh MLP, entirely on this tape engine.

    ``x: [batch, d_in]``, ``y: int [batch]``; weights are Glorot-uniform (Glorot & Bengio,
    2010), biases zero. Returns the cross-entropy before each of the ``steps`` updates.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"x: expected [batch, d_in], got shape {x.shape}")
    if steps < 1 or hidden < 1:
        raise ValueError(f"steps, hidden: expected >= 1, got {steps}, {hidden}")
    rng = np.random.default_rng(seed)
    num_classes = int(y.max()) + 1

    def glorot(fan_in: int, fan_out: int) -> Tensor:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return Tensor(rng.uniform(-limit, limit, size=(fan_in, fan_out)))

    params = [glorot(x.shape[1], hidden), Tensor(np.zeros(hidden)),
              glorot(hidden, num_classes), Tensor(np.zeros(num_classes))]
    w1, b1, w2, b2 = params
    losses = []
    for _ in range(steps):
        with Tape():
            loss = log_softmax_cross_entropy(tanh(x @ w1 + b1) @ w2 + b2, y)
        backward(loss)
        losses.append(float(loss.value))
        for p in params:  # plain SGD, in place on the leaves' values
            p.value -= lr * p.grad
    return losses
