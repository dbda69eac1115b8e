"""State-space layers: the associative scan equals the sequential recurrence (and a float64
numpy loop), recurrent mode equals parallel mode, and the zero-order hold is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models import MODELS
from jaxdl.models.ssm import SSMBlock
from jaxdl.models.ssm import linear_recurrence as _linear_recurrence

# One compilation per call pattern instead of dozens of eager ops.
linear_recurrence = jax.jit(_linear_recurrence, static_argnames="mode")


def test_associative_scan_equals_sequential_recurrence():
    ka, kb, kh = jax.random.split(jax.random.key(0), 3)
    a = jax.random.uniform(ka, (2, 37, 3, 4), minval=0.5, maxval=1.0)
    b = jax.random.normal(kb, (2, 37, 3, 4))
    h0 = jax.random.normal(kh, (2, 3, 4))
    parallel = linear_recurrence(a, b, mode="parallel", h0=h0)
    sequential = linear_recurrence(a, b, mode="sequential", h0=h0)
    h, expected = np.asarray(h0, np.float64), []
    for t in range(37):
        h = np.asarray(a[:, t], np.float64) * h + np.asarray(b[:, t], np.float64)
        expected.append(h)
    expected = np.stack(expected, 1)
    np.testing.assert_allclose(parallel, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sequential, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="scan_mode='fast'"):
        _linear_recurrence(a, b, mode="fast")


def test_zero_order_hold_of_a_constant_input_is_exact():
    """For constant u, h(t) = B u (1 - e^{A t}) / (-A): the discretized recurrence hits the
    continuous solution at the sample times exactly, whatever the step."""
    block = SSMBlock(2, rngs=nnx.Rngs(0), kind="diagonal", state_dim=3, expand=1)
    u = jnp.full((1, 50, 2), 0.7)
    graphdef, state = nnx.split(block)
    a, b, _ = jax.jit(lambda s, u: nnx.merge(graphdef, s).coefficients(u))(state, u)
    h = np.asarray(linear_recurrence(a[None, None], b))
    dt = np.exp(np.asarray(block.log_dt[...], np.float64))[:, None]
    a_cont = -np.exp(np.asarray(block.a_log[...], np.float64))
    t = (np.arange(50) + 1.0)[:, None, None] * dt
    exact = np.asarray(block.b[...]) * 0.7 * (1 - np.exp(a_cont * t)) / (-a_cont)
    np.testing.assert_allclose(h[0], exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["diagonal", "selective"])
def test_recurrent_mode_equals_parallel_mode(kind):
    model = MODELS.build({"name": "ssm_lm", "kind": kind, "d_model": 8, "num_layers": 2,
                          "state_dim": 4, "conv_kernel": 3}, field="model", input_shape=(12,),
                         num_classes=7, rngs=nnx.Rngs(1))
    graphdef, state = nnx.split(model)
    tokens = jax.random.randint(jax.random.key(2), (3, 12), 0, 7)

    @jax.jit
    def both(state, tokens):
        m = nnx.merge(graphdef, state)
        sequential = nnx.merge(graphdef, state)
        sequential.scan_mode = "sequential"
        return m(tokens), m.step_logits(tokens), sequential(tokens)

    parallel, stepped, sequential = both(state, tokens)
    np.testing.assert_allclose(stepped, parallel, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sequential, parallel, rtol=1e-4, atol=1e-5)


def test_gradients_through_the_parallel_scan_match_finite_differences():
    a = jax.random.uniform(jax.random.key(3), (1, 9, 2), minval=0.3, maxval=0.95)
    b = jax.random.normal(jax.random.key(4), (1, 9, 2))

    def loss(a):
        return jnp.sum(jnp.sin(linear_recurrence(a, b)))

    loss = jax.jit(loss)
    grad = jax.jit(jax.grad(loss))(a)
    eps = 1e-2
    for idx in [(0, 0, 0), (0, 4, 1), (0, 8, 0)]:
        step = jnp.zeros_like(a).at[idx].set(eps)
        fd = (loss(a + step) - loss(a - step)) / (2 * eps)
        np.testing.assert_allclose(grad[idx], fd, rtol=2e-2, atol=2e-3)


def test_bad_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="model.kind='mamba'"):
        SSMBlock(4, rngs=nnx.Rngs(0), kind="mamba")
