"""Mixed precision on a small character GPT: f32 vs bf16 vs f16 with dynamic loss scaling.

The same model, initialisation and batches are trained under each policy of
:mod:`jaxdl.parallel.precision` (float32 master weights and Adam state in every case); the
analysis reports the training-loss curves, the largest gap to the float32 curve (smoothed
over ``smooth`` steps), the held-out loss of the final float32 master weights, skipped
steps and the final loss scale of ``f16``, and the median step time of each policy. Figure:
``mixed_precision.png``.

The trainer (``jaxdl.train``) does not take a precision policy yet, so this analysis runs its
own short loop over :func:`jaxdl.parallel.precision.policy_train_step`; once the policy is a
trainer option it should call ``train_and_evaluate`` like the other analyses.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from experiments.analyses.registry import ANALYSES
from jaxdl import functional
from jaxdl.data.dataset import load_dataset
from jaxdl.models import MODELS
from jaxdl.monitor.plots import subplots
from jaxdl.parallel import precision
from jaxdl.registry import ConfigError
from jaxdl.train.objectives import classification


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    return np.convolve(x, np.ones(width) / width, mode="valid")


@ANALYSES.register("mixed_precision")
def run(*, workdir: pathlib.Path, seed: int, policies=("f32", "bf16", "f16"),
        num_steps: int = 200, batch_size: int = 16, seq_len: int = 64,
        learning_rate: float = 3e-3, model: dict | None = None, init_scale: float = 2.0**15,
        growth_interval: int = 50, smooth: int = 20, eval_batches: int = 8) -> dict[str, Any]:
    """Train one GPT per policy on tinyshakespeare with identical batches; compare."""
    for name in policies:
        precision.get_policy(name)
    if "f32" not in policies:
        raise ConfigError(f"config.policies={list(policies)}: expected 'f32' among them "
                          "(the reference the others are compared with).")
    if not 1 <= smooth <= num_steps:
        raise ConfigError(f"config.smooth={smooth}: expected 1 <= value <= num_steps.")
    data = load_dataset("tinyshakespeare", seq_len=seq_len)
    options = {"name": "gpt", "d_model": 64, "num_layers": 2, "num_heads": 4, **(model or {})}
    net = MODELS.build(options, field="config.model", input_shape=data.input_shape,
                       num_classes=data.num_classes, rngs=nnx.Rngs(seed))
    graphdef, params0, state0 = functional.split_model(net)
    objective = classification(graphdef=graphdef)
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(data.train["y"]), (num_steps, batch_size))
    evaluate = jax.jit(objective.evaluate)

    curves, records = {}, {}
    for name in policies:
        tx = precision.make_optimizer(optax.adam(learning_rate), name, init_scale=init_scale,
                                      growth_interval=growth_interval)
        step = jax.jit(precision.policy_train_step(objective.loss, tx, name))
        params, state, opt_state = params0, state0, tx.init(params0)
        losses, skipped, times = [], 0, []
        for i in range(num_steps):
            batch = {k: v[order[i]] for k, v in data.train.items()}
            start = time.perf_counter()
            params, state, opt_state, metrics = step(params, state, opt_state, batch, None)
            losses.append(float(metrics["loss"]))  # blocks: the step time is complete
            times.append(time.perf_counter() - start)
            skipped += int(metrics.get("update_skipped", 0))
        sums = [evaluate(params, state, {k: v[j * 64:(j + 1) * 64]
                                         for k, v in data.eval.items()})
                for j in range(eval_batches)]
        total = jax.tree.map(lambda *x: float(sum(x)), *sums)
        scale = precision.loss_scale_of(opt_state)
        curves[name] = np.array(losses)
        records[name] = {"final_train_loss": float(np.mean(losses[-smooth:])),
                         "eval_loss": total["loss"] / total["count"],
                         "median_step_s": float(np.median(times[1:])),
                         "skipped_steps": skipped,
                         "final_loss_scale": None if scale is None else float(scale)}
    reference = _smooth(curves["f32"], smooth)
    for name in policies:
        records[name]["max_smoothed_gap_to_f32"] = float(
            np.max(np.abs(_smooth(curves[name], smooth) - reference)))
    figure = _plot(pathlib.Path(workdir), curves, smooth)
    summary = {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
               for name, r in records.items()}
    return {"summary": summary, "figures": [figure.name],
            "curves": {k: v.tolist() for k, v in curves.items()}}


def _plot(workdir: pathlib.Path, curves: dict[str, np.ndarray], smooth: int) -> pathlib.Path:
    fig, ax = subplots(figsize=(6, 4))
    for name, losses in curves.items():
        ax.plot(np.arange(smooth - 1, len(losses)), _smooth(losses, smooth), label=name)
    ax.set(xlabel="step", ylabel=f"train loss (mean of {smooth} steps)",
           title="char GPT on tinyshakespeare: precision policies")
    ax.legend()
    fig.tight_layout()
    path = workdir / "mixed_precision.png"
    fig.savefig(path, dpi=100)
    return path
