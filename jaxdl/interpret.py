"""Interpretability for CNNs: first-layer filters, saliency maps and Grad-CAM, as PNGs.

* Filters: the first convolution's kernels ``[kh, kw, in, out]`` drawn as small images
  (Zeiler & Fergus, 2014).
* Saliency (Simonyan et al., 2014): ``|d logit_c / d x|``, maximum over channels.
* Grad-CAM (Selvaraju et al., 2017): weight each channel ``k`` of the last feature map
  ``A: [h, w, K]`` by ``alpha_k = mean_hw d logit_c / d A_k``, then
  ``relu(sum_k alpha_k A_k)`` upsampled to the input size.

Models used with :func:`model_grad_cam` expose ``features(x, train=...)`` and
``classify(features)`` (LeNet5, VGG, ResNet do).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["grad_cam", "model_grad_cam", "model_saliency", "saliency", "save_filters",
           "save_heatmaps"]


def saliency(forward: Callable[[jax.Array], jax.Array], x: jax.Array,
             labels: jax.Array) -> jax.Array:
    """``x: [batch, h, w, c]``, ``labels: int [batch]`` -> ``[batch, h, w]``, the largest
    absolute gradient of each example's class logit over the channels."""
    def score(z):
        logits = forward(z)
        return jnp.take_along_axis(logits, labels[:, None], axis=-1).sum()

    return jnp.abs(jax.grad(score)(x)).max(-1)


def grad_cam(features: Callable[[jax.Array], jax.Array],
             classify: Callable[[jax.Array], jax.Array], x: jax.Array,
             labels: jax.Array) -> jax.Array:
    """``x: [batch, h, w, c]`` -> Grad-CAM maps ``[batch, h, w]`` in ``[0, 1]`` (each map
    divided by its maximum; all-zero maps stay zero)."""
    fmap = features(x)

    def score(a):
        return jnp.take_along_axis(classify(a), labels[:, None], axis=-1).sum()

    grads = jax.grad(score)(fmap)
    alpha = grads.mean((1, 2), keepdims=True)
    cam = jax.nn.relu((alpha * fmap).sum(-1))
    cam = jax.image.resize(cam, (x.shape[0], x.shape[1], x.shape[2]), "bilinear")
    peak = cam.max((1, 2), keepdims=True)
    return jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1.0), 0.0)


def model_saliency(graphdef: nnx.GraphDef, params, state, x, labels) -> jax.Array:
    """:func:`saliency` of a split model in evaluation mode."""
    def forward(z):
        return nnx.merge(graphdef, params, state)(z, train=False)

    return saliency(forward, x, labels)


def model_grad_cam(graphdef: nnx.GraphDef, params, state, x, labels) -> jax.Array:
    """:func:`grad_cam` of a split model with ``features``/``classify`` methods."""
    model = nnx.merge(graphdef, params, state)
    if not (hasattr(model, "features") and hasattr(model, "classify")):
        raise ValueError(f"Grad-CAM needs a model with features() and classify(); "
                         f"{type(model).__name__} has not.")
    return grad_cam(lambda z: model.features(z, train=False), model.classify, x, labels)


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def save_filters(kernel: jax.Array, path: str | pathlib.Path, title: str = "") -> pathlib.Path:
    """Draw first-layer kernels ``[kh, kw, in, out]`` (in = 1 greyscale, 3 RGB) as a grid,
    each normalized to its own range, and save a PNG."""
    from jaxdl.monitor.plots import subplots

    k = np.asarray(kernel, np.float64)
    if k.ndim != 4 or k.shape[2] not in (1, 3):
        raise ValueError(f"save_filters expects a first-layer kernel [kh, kw, 1 or 3, out]; "
                         f"got shape {k.shape}.")
    rows, cols = _grid(k.shape[3])
    fig, axes = subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k.shape[3]:
            f = k[..., i]
            f = (f - f.min()) / (np.ptp(f) or 1.0)
            ax.imshow(f[..., 0] if f.shape[-1] == 1 else f, cmap="gray",
                      interpolation="nearest")
    if title:
        fig.suptitle(title)
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def save_heatmaps(images: jax.Array, maps: dict[str, jax.Array], path: str | pathlib.Path,
                  labels: list[str] | None = None) -> pathlib.Path:
    """One row per example: the image, then each map in ``maps`` overlaid on it."""
    from jaxdl.monitor.plots import subplots

    images = np.asarray(images)
    n, cols = images.shape[0], 1 + len(maps)
    fig, axes = subplots(n, cols, figsize=(cols * 1.6, n * 1.6), squeeze=False)
    for r in range(n):
        image = images[r, ..., 0] if images.shape[-1] == 1 else images[r]
        axes[r, 0].imshow(image, cmap="gray")
        axes[r, 0].set_title(labels[r] if labels else "input", fontsize=8)
        for c, (name, m) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(image, cmap="gray")
            axes[r, c].imshow(np.asarray(m[r]), cmap="jet", alpha=0.5)
            axes[r, c].set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
