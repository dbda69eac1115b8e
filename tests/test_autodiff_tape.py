"""The numpy tape engine: every primitive's gradient against jax.grad in float64, an MLP
loss gradient to 1e-10, broadcasting, the textbook example, and SGD on digits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.autodiff import tape as T


@pytest.fixture
def x64():
    """float64 for jax inside one test only (the context restores the flag afterwards)."""
    with jax.enable_x64(True):
        yield


RNG = np.random.default_rng(0)
A34, B4, B31, B14 = (RNG.normal(size=s) for s in [(3, 4), (4,), (3, 1), (1, 4)])
M45, V4 = RNG.normal(size=(4, 5)), RNG.normal(size=(4,))
W34, W35, W3, W5 = (RNG.normal(size=s) for s in [(3, 4), (3, 5), (3,), (5,)])

# (name, inputs, tape expression, jax expression): each maps the inputs to a scalar; the
# random weights W.. make every output element's cotangent different.
CASES = [
    ("add_broadcast", (A34, B4), lambda a, b: T.sum(T.add(a, b) * W34),
     lambda a, b: jnp.sum((a + b) * W34)),
    ("sub_broadcast", (A34, B31), lambda a, b: T.sum(T.sub(a, b) * W34),
     lambda a, b: jnp.sum((a - b) * W34)),
    ("mul_broadcast", (A34, B14), lambda a, b: T.sum(T.mul(a, b) * W34),
     lambda a, b: jnp.sum(a * b * W34)),
    ("matmul", (A34, M45), lambda a, b: T.sum(T.matmul(a, b) * W35),
     lambda a, b: jnp.sum((a @ b) * W35)),
    ("matvec", (A34, V4), lambda a, b: T.sum(T.matmul(a, b) * W3),
     lambda a, b: jnp.sum((a @ b) * W3)),
    ("vecmat", (V4, M45), lambda a, b: T.sum(T.matmul(a, b) * W5),
     lambda a, b: jnp.sum((a @ b) * W5)),
    ("tanh", (A34,), lambda a: T.sum(T.tanh(a) * W34), lambda a: jnp.sum(jnp.tanh(a) * W34)),
    ("relu", (A34,), lambda a: T.sum(T.relu(a) * W34),
     lambda a: jnp.sum(jax.nn.relu(a) * W34)),
    ("sum_axis0", (A34,), lambda a: T.sum(T.sum(a, axis=0) * W34[0]),
     lambda a: jnp.sum(jnp.sum(a, axis=0) * W34[0])),
    ("mean_axis1_keepdims", (A34,), lambda a: T.sum(T.mean(a, axis=1, keepdims=True) * B31),
     lambda a: jnp.sum(jnp.mean(a, axis=1, keepdims=True) * B31)),
    ("mean_all", (A34,), lambda a: T.mean(T.tanh(a)), lambda a: jnp.mean(jnp.tanh(a))),
    ("cross_entropy", (A34,),
     lambda a: T.log_softmax_cross_entropy(a, np.array([0, 3, 1])),
     lambda a: -jnp.mean(jax.nn.log_softmax(a)[jnp.arange(3), jnp.array([0, 3, 1])])),
]


def tape_grads(fn, inputs):
    tensors = [T.Tensor(v) for v in inputs]
    with T.Tape():
        out = fn(*tensors)
    T.backward(out)
    return float(out.value), [t.grad for t in tensors]


@pytest.mark.parametrize("name,inputs,tape_fn,jax_fn", CASES, ids=[c[0] for c in CASES])
def test_primitive_gradient_matches_jax(x64, name, inputs, tape_fn, jax_fn):
    value, grads = tape_grads(tape_fn, inputs)
    jax_inputs = [jnp.asarray(v, dtype=jnp.float64) for v in inputs]
    argnums = tuple(range(len(inputs)))
    ref_value, ref_grads = jax.jit(jax.value_and_grad(jax_fn, argnums=argnums))(*jax_inputs)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for g, ref, v in zip(grads, ref_grads, inputs):
        assert g.shape == np.shape(v)
        np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-14)


def test_mlp_loss_gradient_matches_jax_to_1e_10(x64):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 10)), rng.integers(0, 4, size=16)
    weights = [rng.normal(size=(10, 8)) / 3, rng.normal(size=8), rng.normal(size=(8, 6)) / 3,
               rng.normal(size=6), rng.normal(size=(6, 4)) / 2, rng.normal(size=4)]
    tensors = [T.Tensor(w) for w in weights]
    w1, b1, w2, b2, w3, b3 = tensors
    with T.Tape():
        loss = T.log_softmax_cross_entropy(T.relu(T.tanh(x @ w1 + b1) @ w2 + b2) @ w3 + b3, y)
    T.backward(loss)

    def jax_loss(ws):
        w1, b1, w2, b2, w3, b3 = ws
        logits = jax.nn.relu(jnp.tanh(x @ w1 + b1) @ w2 + b2) @ w3 + b3
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(16), y])

    ref_loss, ref = jax.jit(jax.value_and_grad(jax_loss))([jnp.asarray(w) for w in weights])
    assert jax.tree.leaves(ref)[0].dtype == jnp.float64
    np.testing.assert_allclose(float(loss.value), ref_loss, rtol=1e-12)
    for t, r in zip(tensors, ref):
        np.testing.assert_allclose(t.grad, r, rtol=0, atol=1e-10)


def test_broadcast_add_grad_is_summed_over_broadcast_axes():
    a, b = T.Tensor(np.ones((3, 4))), T.Tensor(np.zeros(4))
    c = T.Tensor(5.0)
    with T.Tape():
        loss = T.sum(a + b + c)
    T.backward(loss)
    assert b.grad.shape == (4,) and c.grad.shape == ()
    np.testing.assert_array_equal(b.grad, np.full(4, 3.0))  # 3 rows broadcast onto b
    assert c.grad == 12.0
    np.testing.assert_array_equal(a.grad, np.ones((3, 4)))


def test_textbook_example_x_plus_1_squared():
    """f(x) = (x + 1)^2 at x = 2: f = 9, f' = 2(x + 1) = 6 (x+1 feeds both mul inputs)."""
    x = T.Tensor(2.0)
    with T.Tape() as tape:
        y = x + 1.0
        f = y * y
    T.backward(f)
    assert float(f.value) == 9.0 and float(x.grad) == 6.0
    assert [len(r.inputs) for r in tape.records] == [2, 2]  # the Wengert list: add, mul
    assert tape.records[1].inputs == (y, y)
    T.backward(f)  # a second sweep overwrites rather than accumulates
    assert float(x.grad) == 6.0
    with T.Tape():
        g = -(x * x) - x  # d/dx (-x^2 - x) = -2x - 1 = -5
    T.backward(g)
    assert float(g.value) == -6.0 and float(x.grad) == -5.0


def test_recording_is_explicit_and_errors_are_clear():
    x = T.Tensor(np.arange(3.0))
    outside = T.sum(x * x)  # no active tape: computed, not recorded
    assert outside.tape is None and float(outside.value) == 5.0
    with pytest.raises(ValueError, match="loss: expected a Tensor computed inside"):
        T.backward(outside)
    with T.Tape():
        vector = x * 2.0
    with pytest.raises(ValueError, match=r"loss: expected a scalar Tensor, got shape \(3,\)"):
        T.backward(vector)
    with pytest.raises(ValueError, match="matmul: inner dimensions differ"):
        T.matmul(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="labels: expected integer class ids"):
        T.log_softmax_cross_entropy(T.Tensor(np.ones((2, 3))), np.array([0.0, 1.0]))


def test_cross_entropy_is_stable_for_huge_logits():
    """Logits (1000, 0): loss = log(1 + e^-1000) ~ 0 and the gradient stays finite; a naive
    exp would overflow to inf/nan."""
    logits = T.Tensor(np.array([[1000.0, 0.0], [0.0, 1000.0]]))
    with T.Tape():
        loss = T.log_softmax_cross_entropy(logits, np.array([1, 1]))
    T.backward(loss)
    np.testing.assert_allclose(float(loss.value), 500.0)  # (1000 + 0) / 2
    np.testing.assert_allclose(logits.grad, [[0.5, -0.5], [0.0, 0.0]], atol=1e-300)


def test_tiny_mlp_learns_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data[:200] / 16.0, digits.target[:200]
    losses = T.train_tiny_mlp(x, y, hidden=32, steps=300, lr=0.5, seed=0)
    assert len(losses) == 300 and np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_float64_did_not_leak_into_other_tests():
    assert jnp.zeros(1).dtype == jnp.float32
