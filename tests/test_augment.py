"""Augmentation: deterministic for a fixed key, jit-able, and each transform checked against
a direct construction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.regularize import augment

X = jax.random.uniform(jax.random.key(0), (6, 8, 8, 2))


def test_deterministic_for_a_fixed_key_and_jittable():
    options = {"crop_padding": 2, "flip": True, "translate": 1.5, "rotate_degrees": 10.0,
               "scale": 0.1, "noise_std": 0.05}
    f = jax.jit(lambda k, x: augment.augment_batch(k, x, options))
    a, b = f(jax.random.key(3), X), f(jax.random.key(3), X)
    np.testing.assert_array_equal(a, b)
    # eager (op by op) and compiled agree up to float rounding of the bilinear resampling
    np.testing.assert_allclose(augment.augment_batch(jax.random.key(3), X, options), a,
                               atol=1e-5)
    c = f(jax.random.key(4), X)
    assert not np.allclose(a, c)
    assert a.shape == X.shape


def test_random_crop_is_a_shift_of_the_padded_image():
    out = np.asarray(augment.random_crop(jax.random.key(1), X, 2))
    padded = np.pad(np.asarray(X), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(X.shape[0]):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])]
        assert matches, f"example {i} is not a crop of its padded image"


def test_random_flip_mirrors_about_half():
    key = jax.random.key(2)
    x = jax.random.uniform(key, (200, 4, 4, 1))
    out = np.asarray(augment.random_flip(key, x))
    x = np.asarray(x)
    flipped = np.array([np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)])
    same = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped ^ same).all()
    assert 0.35 < flipped.mean() < 0.65


def test_affine_identity_integer_shift_and_quarter_turn():
    x = X[0]
    eye = jnp.eye(2)
    np.testing.assert_allclose(augment.affine_transform(x, eye, jnp.zeros(2)), x, atol=1e-6)
    shifted = augment.affine_transform(x, eye, jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(shifted[:-1], x[1:], atol=1e-6)  # output row r = input r + 1
    np.testing.assert_allclose(shifted[-1], 0.0, atol=1e-6)
    quarter = jnp.array([[0.0, -1.0], [1.0, 0.0]])
    turned = augment.affine_transform(x, quarter, jnp.zeros(2))
    # out[r, c] = in[n - 1 - c, r]: a clockwise quarter turn
    np.testing.assert_allclose(turned, np.rot90(np.asarray(x), k=-1, axes=(0, 1)), atol=1e-5)


def test_noise_statistics():
    out = augment.gaussian_noise(jax.random.key(0), jnp.zeros((100, 8, 8, 1)), 0.3)
    assert abs(float(out.std()) - 0.3) < 0.01 and abs(float(out.mean())) < 0.01


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="loss.augment.mirror"):
        augment.check_augment_options({"mirror": True})
    with pytest.raises(ValueError, match="loss.augment.noise_std=-1"):
        augment.check_augment_options({"noise_std": -1})
    with pytest.raises(ValueError, match="images"):
        augment.augment_batch(jax.random.key(0), jnp.zeros((2, 8)), {"flip": True})
