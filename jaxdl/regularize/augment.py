"""Data augmentation in JAX: jit-able, per-example random transforms of image batches.

``x: [batch, height, width, channels]`` -> same shape. Every transform draws one random
choice per example from ``key`` (``jax.random.split`` over the batch), so the result is a
deterministic function of the key and the train step's key makes runs reproducible.

* random crop with zero padding and horizontal flips (Krizhevsky et al., 2012);
* small translations, rotations and scalings (a random affine map, bilinear resampling);
* additive Gaussian noise (Bishop, 1995: equivalent to Tikhonov regularization for small
  noise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

OPTIONS = ("crop_padding", "flip", "translate", "rotate_degrees", "scale", "noise_std")


def random_crop(key: jax.Array, x: jax.Array, padding: int) -> jax.Array:
    """Zero-pad each image by ``padding`` pixels and crop back at a random offset."""
    if padding == 0:
        return x
    b, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, x.shape[3]))

    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Mirror each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    return jnp.where(flip, x[:, :, ::-1, :], x)


def affine_transform(x: jax.Array, matrix: jax.Array, shift: jax.Array) -> jax.Array:
    """Resample one image ``x: [h, w, c]``: output pixel ``p`` (centred coordinates) takes
    the input at ``matrix @ p + centre + shift`` (bilinear, zero outside)."""
    h, w, _ = x.shape
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
    rows, cols = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    grid = jnp.stack([rows.ravel(), cols.ravel()]) - centre[:, None]
    src = matrix @ grid + (centre + shift)[:, None]

    def channel(c):
        return jax.scipy.ndimage.map_coordinates(c, [src[0], src[1]], order=1, mode="constant")

    return jax.vmap(channel, in_axes=-1, out_axes=-1)(x).reshape(x.shape)


def random_affine(key: jax.Array, x: jax.Array, *, translate: float = 0.0,
                  rotate_degrees: float = 0.0, scale: float = 0.0) -> jax.Array:
    """Per image: shift up to ``translate`` pixels, rotate up to ``rotate_degrees``, zoom by
    a factor in ``[1 - scale, 1 + scale]`` (uniform draws)."""
    b = x.shape[0]
    k_shift, k_angle, k_scale = jax.random.split(key, 3)
    shift = jax.random.uniform(k_shift, (b, 2), minval=-translate, maxval=translate)
    angle = jnp.deg2rad(jax.random.uniform(k_angle, (b,), minval=-rotate_degrees,
                                           maxval=rotate_degrees))
    zoom = jax.random.uniform(k_scale, (b,), minval=1 - scale, maxval=1 + scale)
    cos, sin = jnp.cos(angle) / zoom, jnp.sin(angle) / zoom
    matrix = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
    return jax.vmap(affine_transform)(x, matrix, shift)


def gaussian_noise(key: jax.Array, x: jax.Array, std: float) -> jax.Array:
    return x + std * jax.random.normal(key, x.shape, x.dtype)


def check_augment_options(options: Mapping[str, Any] | None, field: str = "loss.augment"
                          ) -> dict[str, Any]:
    """Validate an augmentation spec, e.g. ``{"crop_padding": 2, "flip": False}``."""
    options = dict(options or {})
    for name, value in options.items():
        if name not in OPTIONS:
            raise ValueError(f"{field}.{name} is not an augmentation; expected keys among "
                             f"{list(OPTIONS)}.")
        if name == "flip":
            if not isinstance(value, bool):
                raise ValueError(f"{field}.flip={value!r}: expected true/false.")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{field}.{name}={value!r}: expected a number >= 0.")
    if "crop_padding" in options and int(options["crop_padding"]) != options["crop_padding"]:
        raise ValueError(f"{field}.crop_padding={options['crop_padding']!r}: expected an "
                         "integer number of pixels.")
    if options.get("scale", 0) >= 1:
        raise ValueError(f"{field}.scale={options['scale']}: expected < 1.")
    return options


def augment_batch(key: jax.Array, x: jax.Array, options: Mapping[str, Any]) -> jax.Array:
    """Apply the transforms named in ``options`` (see :data:`OPTIONS`) in a fixed order:
    affine, crop, flip, noise. ``x: [batch, h, w, c]``."""
    if x.ndim != 4:
        raise ValueError(f"augmentation expects images [batch, h, w, c]; got shape {x.shape}.")
    k_affine, k_crop, k_flip, k_noise = jax.random.split(key, 4)
    affine = {k: options.get(k, 0.0) for k in ("translate", "rotate_degrees", "scale")}
    if any(affine.values()):
        x = random_affine(k_affine, x, **affine)
    if options.get("crop_padding", 0):
        x = random_crop(k_crop, x, int(options["crop_padding"]))
    if options.get("flip", False):
        x = random_flip(k_flip, x)
    if options.get("noise_std", 0.0):
        x = gaussian_noise(k_noise, x, options["noise_std"])
    return x
