"""Knowledge distillation on digits: a small student with and without a teacher.

A wide teacher MLP is trained on the full training split. A narrow student with only
``student_examples`` labelled examples is then trained three ways, with the same
initialization and step count: ``alone`` (cross-entropy on the labelled subset),
``distilled`` (:func:`distillation_loss`, Hinton et al., 2015, on the same subset: hard labels
plus the teacher's softened logits) and ``transfer`` (soft targets only, ``alpha = 1``, on
every training image: the teacher labels a larger transfer set, as in Hinton et al.'s
experiments). Held-out accuracy is averaged over ``seeds``.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from experiments.analyses import _loops
from experiments.analyses.registry import ANALYSES
from jaxdl import functional
from jaxdl.adapt.distill import distillation_loss
from jaxdl.data import load_dataset
from jaxdl.models.mlp import MLP
from jaxdl.registry import ConfigError


def _distill_fn(graphdef, state, alpha: float, temperature: float):
    def loss_fn(params, batch, key):
        logits, _ = functional.apply(graphdef, params, state, batch["x"])
        labels = batch["y"] if alpha < 1 else None
        return distillation_loss(logits, batch["teacher_logits"], labels,
                                 temperature=temperature, alpha=alpha)
    return loss_fn


@ANALYSES.register("distillation")
def run(*, workdir: pathlib.Path, seed: int, teacher_hidden: tuple = (512, 512),
        student_hidden: tuple = (32,), teacher_steps: int = 1000, student_steps: int = 600,
        student_examples: int = 100, temperature: float = 4.0, alpha: float = 0.9,
        seeds: int = 3, learning_rate: float = 3e-3) -> dict[str, Any]:
    zeros = np.zeros((1, 10), np.float32)  # checks temperature and alpha before training
    distillation_loss(zeros, zeros, np.zeros(1, np.int32), temperature=temperature, alpha=alpha)
    ds = load_dataset("digits")
    n = ds.train["y"].shape[0]
    if not 10 <= student_examples <= n:
        raise ConfigError(f"student_examples={student_examples}: expected 10..{n}.")
    t_graph, t_params, t_state, _ = _loops.train_mlp(ds.train, tuple(teacher_hidden),
                                                     num_steps=teacher_steps, seed=seed)
    teacher_acc = _loops.accuracy(t_graph, t_params, t_state, ds.eval)
    forward = jax.jit(functional.apply, static_argnums=0)
    runs = {"alone": [], "distilled": [], "transfer": []}
    transfer = {"x": ds.train["x"], "y": ds.train["y"],
                "teacher_logits": np.asarray(forward(t_graph, t_params, t_state,
                                                     ds.train["x"])[0])}
    for s in range(seed, seed + seeds):
        subset = np.random.default_rng(s).permutation(n)[:student_examples]
        data = {k: v[subset] for k, v in transfer.items()}
        graphdef, init, state = functional.split_model(
            MLP(64, 10, tuple(student_hidden), rngs=nnx.Rngs(s)))

        for label, loss_fn, train in (
                ("alone", _loops.classifier_loss(graphdef, state), data),
                ("distilled", _distill_fn(graphdef, state, alpha, temperature), data),
                ("transfer", _distill_fn(graphdef, state, 1.0, temperature), transfer)):
            params, _ = _loops.fit(loss_fn, init, optax.adam(learning_rate), train,
                                   batch_size=64, num_steps=student_steps, seed=s)
            runs[label].append(_loops.accuracy(graphdef, params, state, ds.eval))
    summary = {
        "teacher_params": functional.count_params(t_params),
        "student_params": functional.count_params(init),
        "teacher_held_out_accuracy": teacher_acc,
        "student_examples": student_examples,
        **{f"student_{k}_accuracy_mean": float(np.mean(v)) for k, v in runs.items()},
        **{f"student_{k}_accuracy_per_seed": v for k, v in runs.items()},
    }
    return {"summary": summary, "figures": []}
