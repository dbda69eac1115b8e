"""DDPM on the 8x8 digits, sampled by DDPM and by DDIM with 10 to 1000 steps.

An :class:`EpsilonMLP` is trained with Ho et al.'s (2020) simple loss on digits scaled to
[-1, 1] (linear schedule, ``T`` steps). Samples come from the ancestral DDPM sampler (all
``T`` steps) and from DDIM (Song et al., 2021) on evenly spaced sub-sequences. Quality
proxies, computed with a separately trained digits MLP classifier (64-64):

* ``confidence``: the classifier's mean top-class probability on the samples (real held-out
  digits give the reference value);
* ``frechet``: the Frechet distance between Gaussians fitted to the classifier's last hidden
  layer (64 features) on the samples and on the held-out digits (an FID-style score in a
  small classifier's feature space; the training images give the floor).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg
from flax import nnx

from experiments.analyses import _loops
from experiments.analyses.registry import ANALYSES
from experiments.analyses.vae import image_grid
from jaxdl import functional
from jaxdl.data import load_dataset
from jaxdl.generative import diffusion


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^{1/2})`` of two feature sets
    ``[n, d]`` (Heusel et al., 2017), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ridge = 1e-6 * np.eye(a.shape[1])  # dead ReLU features make the covariances singular
    ca, cb = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    root = scipy.linalg.sqrtm(ca @ cb).real
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * root))


def classifier_features(graphdef, params, state):
    """``x: [n, 8, 8, 1]`` in [0, 1] -> (last hidden activations, top-class probability)."""
    @jax.jit
    def features(x):
        model = nnx.merge(graphdef, params, state)
        h = x.reshape(x.shape[0], -1)
        for layer in model.layers:
            h = model.activation(layer(h))
        return h, jax.nn.softmax(model.head(h)).max(-1)
    return features


@ANALYSES.register("diffusion")
def run(*, workdir: pathlib.Path, seed: int, num_steps: int = 4000, batch_size: int = 128,
        learning_rate: float = 1e-3, hidden: int = 256, num_layers: int = 3,
        diffusion_steps: int = 1000, ddim_steps: tuple = (10, 20, 50, 1000),
        num_samples: int = 500, classifier_steps: int = 800) -> dict[str, Any]:
    ds = load_dataset("digits")
    schedule = diffusion.linear_schedule(diffusion_steps)
    for n in ddim_steps:
        diffusion.step_sequence(diffusion_steps, n)  # validates before any training
    graphdef, params, state = functional.split_model(
        diffusion.EpsilonMLP((8, 8, 1), hidden, num_layers, rngs=nnx.Rngs(seed)))

    def eps_fn(params):
        return lambda x, t: functional.apply(graphdef, params, state, (x, t))[0]

    def loss_fn(params, batch, key):
        return diffusion.ddpm_loss(eps_fn(params), schedule, 2 * batch["x"] - 1, key)

    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, 0.05))
    start = time.perf_counter()
    params, losses = _loops.fit(loss_fn, params, tx, {"x": ds.train["x"]},
                                batch_size=batch_size, num_steps=num_steps, seed=seed)
    train_seconds = time.perf_counter() - start

    c_graph, c_params, c_state, _ = _loops.train_mlp(ds.train, (64, 64),
                                                     num_steps=classifier_steps, seed=seed)
    features = classifier_features(c_graph, c_params, c_state)
    real_feats, real_conf = features(ds.eval["x"])
    train_feats, _ = features(ds.train["x"])
    reference = {"held_out_confidence": float(real_conf.mean()),
                 "frechet_train_vs_held_out": frechet_distance(train_feats, real_feats)}

    methods = [("ddpm", diffusion_steps, 1.0)] + [("ddim", n, 0.0) for n in ddim_steps]
    results, figures, key = [], [], jax.random.key(seed + 1)
    shape = (num_samples, 8, 8, 1)
    for method, steps, eta in methods:
        sampler = jax.jit(lambda p, k, m=method, s=steps, e=eta: diffusion.sample(
            eps_fn(p), schedule, shape, k, sampling_steps=s, eta=e, method=m))
        jax.block_until_ready(sampler(params, key))  # compile outside the timing
        start = time.perf_counter()
        x = jnp.clip((jax.block_until_ready(sampler(params, key)) + 1) / 2, 0, 1)
        seconds = time.perf_counter() - start
        feats, conf = features(x)
        label = f"{method}_{steps}"
        results.append({"sampler": label, "steps": steps, "eta": eta,
                        "confidence": float(conf.mean()),
                        "frechet": frechet_distance(feats, real_feats),
                        "sampling_seconds": seconds})
        figures.append(image_grid(np.asarray(x[:50]), pathlib.Path(workdir) / f"{label}.png",
                                  title=f"{method.upper()}, {steps} steps"))
    summary = {"final_train_loss": float(np.mean(losses[-100:])),
               "train_seconds": train_seconds, "reference": reference, "samplers": results}
    return {"summary": summary, "figures": [f.name for f in figures]}
