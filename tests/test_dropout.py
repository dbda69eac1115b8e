"""Dropout variants: identity in evaluation, expectation preserved in training, the right
units dropped together."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models import dropout

X = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, size=(256, 4, 4, 8)), jnp.float32)


@pytest.mark.parametrize("layer", [dropout.Dropout(0.3), dropout.SpatialDropout(0.3)])
def test_identity_in_evaluation(layer):
    np.testing.assert_array_equal(layer(X, train=False, rngs=nnx.Rngs(0)), X)


@pytest.mark.parametrize("make", [dropout.Dropout, dropout.SpatialDropout])
def test_expectation_preserved_in_training(make):
    layer = make(0.4)
    outs = jnp.stack([layer(X, train=True, rngs=nnx.Rngs(i)) for i in range(20)])
    kept = np.asarray(outs != 0).mean()
    assert abs(kept - 0.6) < 0.01
    # mean over 20 masks x 256 examples: close to the input mean (std error ~0.3%)
    ratio = float(outs.mean() / X.mean())
    assert abs(ratio - 1.0) < 0.02
    nonzero = np.asarray(outs[0])[np.asarray(outs[0]) != 0]
    np.testing.assert_allclose(nonzero, np.asarray(X)[np.asarray(outs[0]) != 0] / 0.6,
                               rtol=1e-6)


def test_spatial_dropout_drops_whole_channels():
    out = np.asarray(dropout.SpatialDropout(0.5)(X, train=True, rngs=nnx.Rngs(3)))
    zero = out == 0
    per_channel = zero.all((1, 2)) | (~zero).all((1, 2))
    assert per_channel.all()
    assert 0.3 < zero.all((1, 2)).mean() < 0.7


def test_dropconnect_masks_weights_per_example_and_keeps_expectation():
    layer = dropout.DropConnectLinear(6, 3, 0.5, rngs=nnx.Rngs(0))
    x = jnp.ones((2000, 6))
    full = layer(x, train=False)
    np.testing.assert_allclose(full, layer.linear(x))
    out = layer(x, train=True, rngs=nnx.Rngs(1))
    # same input, different weight masks per example
    assert np.asarray(out).std(0).min() > 1e-3
    np.testing.assert_allclose(out.mean(0), full[0], atol=0.15)


def test_drop_path_zeroes_whole_examples():
    out = np.asarray(dropout.drop_path(X, 0.25, train=True, rngs=nnx.Rngs(0)))
    dropped = (out == 0).all((1, 2, 3))
    kept = ~dropped
    np.testing.assert_allclose(out[kept], np.asarray(X)[kept] / 0.75, rtol=1e-6)
    assert 0.15 < dropped.mean() < 0.35
    np.testing.assert_array_equal(dropout.drop_path(X, 0.25, train=False, rngs=None), X)


def test_bad_rate_and_missing_rngs_are_clear_errors():
    with pytest.raises(ValueError, match="rate=1.0"):
        dropout.Dropout(1.0)
    with pytest.raises(ValueError, match="needs rngs"):
        dropout.Dropout(0.1)(X, train=True, rngs=None)


def test_dropout_under_jit_with_step_key_is_deterministic():
    layer = dropout.Dropout(0.5)
    f = jax.jit(lambda k: layer(X, train=True, rngs=nnx.Rngs(k)))
    np.testing.assert_array_equal(f(jax.random.key(1)), f(jax.random.key(1)))
    assert not np.array_equal(f(jax.random.key(1)), f(jax.random.key(2)))
