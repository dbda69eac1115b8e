"""A variational autoencoder (Kingma & Welling, 2014) on the 8x8 digits.

MLP encoder/decoder, Bernoulli likelihood on the grayscale pixels in [0, 1]. Reports the
held-out ELBO (nats per image, one reparameterized sample, averaged over ``eval_samples``
draws) split into reconstruction and KL, and writes a grid of samples decoded from the prior
and a grid of held-out images over their reconstructions.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.analyses import _loops
from experiments.analyses.registry import ANALYSES
from jaxdl import functional
from jaxdl.data import load_dataset
from jaxdl.generative.vae import VAE, elbo
from jaxdl.monitor.plots import subplots


def image_grid(images: np.ndarray, path: pathlib.Path, columns: int = 10,
               title: str = "") -> pathlib.Path:
    """Save ``images: [n, H, W(, 1)]`` in ``[0, 1]`` as one grayscale grid PNG."""
    images = np.asarray(images).reshape(len(images), *np.asarray(images).shape[1:3])
    rows = -(-len(images) // columns)
    h, w = images.shape[1:]
    canvas = np.zeros((rows * (h + 1), columns * (w + 1)))  # white gaps (gray_r)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image
    fig, ax = subplots(figsize=(columns * 0.6, rows * 0.6 + 0.4))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


@ANALYSES.register("vae")
def run(*, workdir: pathlib.Path, seed: int, latent: int = 8, hidden: tuple = (256,),
        num_steps: int = 3000, batch_size: int = 128, learning_rate: float = 1e-3,
        eval_samples: int = 10) -> dict[str, Any]:
    ds = load_dataset("digits")
    graphdef, params, state = functional.split_model(
        VAE((8, 8, 1), latent, tuple(hidden), rngs=nnx.Rngs(seed)))

    def loss_fn(params, batch, key):
        out, _ = functional.apply(graphdef, params, state, batch["x"], train=True, rng=key)
        return -elbo(out, batch["x"])[0].mean()

    @jax.jit
    def evaluate(params, x, key):
        def one(k):
            out, _ = functional.apply(graphdef, params, state, x, train=True, rng=k)
            return jnp.stack([v.mean() for v in elbo(out, x)])
        return jax.vmap(one)(jax.random.split(key, eval_samples)).mean(0)

    init_stats = evaluate(params, ds.eval["x"], jax.random.key(seed + 1))
    params, losses = _loops.fit(loss_fn, params, optax.adam(learning_rate), ds.train,
                                batch_size=batch_size, num_steps=num_steps, seed=seed)
    stats = evaluate(params, ds.eval["x"], jax.random.key(seed + 1))
    model = functional.merge_model(graphdef, params, state)
    z = jax.random.normal(jax.random.key(seed + 2), (50, latent))
    samples = jax.nn.sigmoid(model.decode(z))
    recon = jax.nn.sigmoid(model(ds.eval["x"][:10]).logits)
    workdir = pathlib.Path(workdir)
    figures = [
        image_grid(samples, workdir / "vae_samples.png", title="VAE samples (prior)"),
        image_grid(np.concatenate([ds.eval["x"][:10], np.asarray(recon)]),
                   workdir / "vae_reconstructions.png",
                   title="held-out images (top) and reconstructions (bottom)"),
    ]
    names = ("elbo", "reconstruction", "kl")
    summary = {
        "held_out_initial": dict(zip(names, map(float, init_stats))),
        "held_out_trained": dict(zip(names, map(float, stats))),
        "train_loss_first_last": [losses[0], float(np.mean(losses[-100:]))],
        "units": "nats per 8x8 image",
    }
    return {"summary": summary, "figures": [f.name for f in figures]}
