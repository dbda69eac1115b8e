"""Signal propagation at initialization: activation and gradient variance per layer.

For each (activation, initialization) pair a ``depth``-layer MLP of constant ``width`` is
drawn and one batch of standard-normal inputs is pushed forward and backward
(:func:`jaxdl.init.signal_propagation`). A scheme is *stable* when both variances stay
within a few orders of magnitude across depth; the classic failures are the geometric
collapse of a too-small init (``small_normal``) and the ReLU halving under Glorot
(Glorot & Bengio, 2010; He et al., 2015). The name ``lsuv`` adds Mishkin & Matas' (2016)
data-driven rescaling on top of an orthogonal draw.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl import init as initialization
from jaxdl.monitor.plots import subplots
from jaxdl.registry import ConfigError

# Variance ratio (last layer / first layer) beyond which a scheme is called unstable.
UNSTABLE_RATIO = 1e3
# Values that underflowed to 0 in float32 are drawn here (float32's smallest normal ~1e-38).
UNDERFLOW = 1e-40


def verdict(origin: float, far: float) -> str:
    """``"vanishing"``, ``"exploding"`` or ``"stable"`` for a signal whose variance is
    ``origin`` where it enters (layer 1 forward, the last layer backward) and ``far`` where
    it has crossed the whole stack."""
    if not np.isfinite(far) or far > UNSTABLE_RATIO * origin:
        return "exploding"
    if origin == 0.0 or far < origin / UNSTABLE_RATIO:
        return "vanishing"
    return "stable"


def _layers(key, init_name: str, activation: str, depth: int, width: int, x):
    if init_name != "lsuv":
        return initialization.deep_mlp_layers(key, depth, width, width, init_name)
    layers = initialization.deep_mlp_layers(key, depth, width, width, "orthogonal")
    return initialization.lsuv_mlp(layers, activation, x)


@ANALYSES.register("signal_propagation")
def run(*, workdir: pathlib.Path, seed: int, depth: int = 50, width: int = 256,
        batch: int = 512, activations=("tanh", "relu"),
        inits=("small_normal", "glorot_normal", "he_normal")) -> dict[str, Any]:
    """Per-layer variances for every activation x init; ``signal_propagation.png``."""
    for field, value in (("depth", depth), ("width", width), ("batch", batch)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"config.{field}={value!r}: expected an integer >= 1.")
    for name in inits:
        if name != "lsuv":
            initialization.get_initializer(name, argument="config.inits")
    key_x, key_w = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(key_x, (batch, width))
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    summary: dict[str, Any] = {}
    for activation in activations:
        probe = jax.jit(lambda layers, act=activation: initialization.signal_propagation(
            layers, act, x, key=jax.random.key(seed + 1)))
        for init_name in inits:
            layers = _layers(key_w, init_name, activation, depth, width, x)
            report = jax.device_get(probe(layers))
            forward = np.asarray(report.post_activation_second_moment, np.float64)
            backward = np.asarray(report.gradient_var, np.float64)
            curves.setdefault(activation, {})[init_name] = {
                "forward": forward.tolist(), "backward": backward.tolist()}
            summary[f"{activation}/{init_name}"] = {
                "forward_second_moment_first_last": [float(forward[0]), float(forward[-1])],
                "gradient_var_first_last": [float(backward[0]), float(backward[-1])],
                "forward": verdict(forward[0], forward[-1]),
                "backward": verdict(backward[-1], backward[0]),
            }
    figure = _plot(pathlib.Path(workdir), curves)
    return {"summary": summary, "figures": [figure.name], "curves": curves}


def _plot(workdir: pathlib.Path, curves) -> pathlib.Path:

    rows = len(curves)
    fig, axes = subplots(rows, 2, figsize=(11, 3.6 * rows), squeeze=False)
    for row, (activation, by_init) in enumerate(curves.items()):
        for col, (kind, label) in enumerate((("forward", "activation second moment E[h^2]"),
                                             ("backward", "gradient variance Var(dL/dz)"))):
            ax = axes[row, col]
            for init_name, values in by_init.items():
                layer = np.arange(1, len(values[kind]) + 1)
                ax.semilogy(layer, np.maximum(values[kind], UNDERFLOW), label=init_name)
            ax.axhline(UNDERFLOW, color="gray", linestyle=":", linewidth=1)
            ax.text(1, UNDERFLOW * 10, "float32 underflow (exact 0)", fontsize=7, color="gray")
            ax.set(xlabel="layer", ylabel=label, title=f"{activation}: {kind} pass")
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = workdir / "signal_propagation.png"
    fig.savefig(path, dpi=100)
    return path
