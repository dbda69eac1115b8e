"""K-FAC vs Adam vs SGD-momentum on the deep autoencoder (Martens & Grosse, 2015 setup).

    python -m experiments.bench.kfac_autoencoder [--steps 500] [--only kfac,adam_1e-3]
                                                 [--kfac '{"learning_rate": 0.1}']

Model 784-1000-500-250-30-250-500-1000-784 (tanh, linear code and output), objective =
sigmoid cross-entropy summed over pixels against the grayscale images + L2 1e-5 (``loss``
``sigmoid_reconstruction``), batch 1024 drawn from the first 8,000 MNIST images (the
10k test files in ``$JAXDL_DATA_DIR/mnist``), objective evaluated on all 8,000. Every
optimizer trains through the one compiled train step (``jaxdl.train.make_train_step``), from
the same initial parameters and the same batch order.

Timing (shared/BENCHMARKING.md): the runs advance round by round, one step each, so every
optimizer sees the same machine load; seconds/step is the median after the first
(compiling) step, and ``kfac_step_over_adam_step`` is the median of the per-round ratios.
Last line: JSON with ``kfac_step_over_adam_step`` and ``kfac_objective`` (step -> value).
Goal (issue 4): objective <= 85 / 56 / 48.5 at steps 100 / 200 / 500 and a K-FAC step
<= 2.7x an Adam step.

Measured 2026-11-30 (jax 0.10.2, shared 2-core VM under load from other jobs; one run,
``python -m experiments.bench.kfac_autoencoder``, K-FAC with ``curvature_subsample=4``):

    optimizer      s/step      0      50     100     200     500
    kfac            1.924  544.91  95.15   63.29   51.01   51.05
    adam_1e-3       0.755  544.91 194.94  167.59  131.90   83.90
    adam_3e-4       0.712  544.91 204.07  192.55  150.86   96.39
    sgd_momentum    0.725  544.91 204.29  203.63  202.77  146.24

``kfac_step_over_adam_step`` = 2.48 (goal <= 2.7: met); objective at 100 / 200 met
(63.3 <= 85, 51.0 <= 56). That run had ``min_damping=1e-8``: the Levenberg-Marquardt
damping kept shrinking (4.5e-5 at step 200, 5.8e-6 at 250) and K-FAC stalled (51.05 at
500). With the floor ``min_damping=1e-3`` (now the default here; same per-step work), a
K-FAC-only run (``--only kfac``) gave 95.15 / 63.29 / 50.96 / 47.64 at steps
50 / 100 / 200 / 500 (goal 48.5 at 500: met) at 0.686 s/step; its ratio to Adam was not
re-measured in that run.
With full-batch curvature (``curvature_subsample=1``) the objective was 93.7 at step 50 and
62.7 at step 100, but a step cost about 4.4 Adam steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl import functional
from jaxdl.data import BatchIterator
from jaxdl.data.files import find_data_file
from jaxdl.data.images import IDX_IMAGES_MAGIC, MNIST_SHA256, read_idx
from jaxdl.models import MODELS
from jaxdl.optim import build_optimizer
from jaxdl.train import OBJECTIVES, create_train_state, make_train_step

REPORT_STEPS = (0, 50, 100, 200, 500)
KFAC = {"name": "kfac", "learning_rate": 1.0, "adaptive": True, "adapt_damping": True,
        "damping": 1.0, "damping_every": 5, "damping_decay": 0.95**5, "inverse_every": 20,
        "ema": 0.95, "l2_damping": 1e-5, "curvature_subsample": 4, "min_damping": 1e-3}
OPTIMIZERS = {
    "kfac": KFAC,
    "adam_1e-3": {"name": "adam", "learning_rate": 1e-3},
    "adam_3e-4": {"name": "adam", "learning_rate": 3e-4},
    "sgd_momentum": {"name": "momentum", "learning_rate": 1e-3, "momentum": 0.9},
}


def first_mnist_images(n: int = 8000) -> np.ndarray:
    """The first ``n`` images of the MNIST test files, float32 [n, 28, 28, 1] in [0, 1]."""
    name = "t10k-images-idx3-ubyte.gz"
    images = read_idx(find_data_file(f"mnist/{name}", sha256=MNIST_SHA256[name]),
                      expected_magic=IDX_IMAGES_MAGIC)
    return (images[:n].astype(np.float32) / 255.0)[..., None]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.kfac_autoencoder")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--only", default=",".join(OPTIMIZERS))
    parser.add_argument("--kfac", default="{}", help="JSON overrides of the K-FAC options")
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args(argv)
    images = first_mnist_images()
    data = {"x": images, "y": np.zeros(len(images), np.int32)}
    model = MODELS.build({"name": "autoencoder"}, field="model", input_shape=(28, 28, 1),
                         num_classes=10, rngs=nnx.Rngs(0))
    graphdef, params0, model_state = functional.split_model(model)
    objective = OBJECTIVES.build({"name": "sigmoid_reconstruction", "l2": 1e-5}, field="loss",
                                 graphdef=graphdef)

    @jax.jit
    def full_objective(params):
        totals = [objective.evaluate(params, model_state, {"x": chunk})
                  for chunk in jnp.split(jnp.asarray(images), 4)]
        return sum(t["loss"] for t in totals) / len(images)

    OPTIMIZERS["kfac"] = {**KFAC, **json.loads(args.kfac)}
    names = args.only.split(",")
    runs = {}
    for name in names:
        tx, _ = build_optimizer({"schedule": "constant", **OPTIMIZERS[name]}, args.steps)
        params = jax.tree.map(jnp.copy, params0)
        runs[name] = {
            "state": create_train_state(params, model_state, tx, jax.random.key(0)),
            "step": make_train_step(objective.loss, tx),
            "batches": BatchIterator(data, args.batch, seed=0),
            "times": [], "objective": {0: float(full_objective(params0))},
        }
    for t in range(1, args.steps + 1):
        for name in names:
            run = runs[name]
            batch = jax.device_put(next(run["batches"]))
            start = time.perf_counter()
            run["state"], metrics = run["step"](run["state"], batch)
            jax.block_until_ready(metrics)
            run["times"].append(time.perf_counter() - start)
            if t in REPORT_STEPS or t == args.steps:
                run["objective"][t] = float(full_objective(run["state"].params))
        if t in REPORT_STEPS or t % 50 == 0:
            seconds = {n: statistics.median(runs[n]["times"][1:] or [0.0]) for n in names}
            damping = getattr(runs.get("kfac", {}).get("state"), "opt_state", None)
            damping = getattr(damping, "damping", None)  # K-FAC's LM damping, when plain
            if damping is not None:
                print(f"step {t}: kfac damping {float(damping):.4g}")
            print(f"step {t}: " + ", ".join(
                f"{n} {runs[n]['objective'].get(t, '-')} ({seconds[n]:.3f} s/step)"
                for n in names), flush=True)
    print(f"\n{'optimizer':<14}{'s/step':>9}" + "".join(f"{s:>9}" for s in REPORT_STEPS))
    for name in names:
        run = runs[name]
        cells = "".join(f"{run['objective'].get(s, float('nan')):>9.2f}" for s in REPORT_STEPS)
        print(f"{name:<14}{statistics.median(run['times'][1:]):>9.3f}{cells}")
    result: dict = {"steps": args.steps, "kfac_options": OPTIMIZERS["kfac"]}
    if "kfac" in runs and "adam_1e-3" in runs:
        ratios = [k / a for k, a in zip(runs["kfac"]["times"][1:],
                                        runs["adam_1e-3"]["times"][1:])]
        result["kfac_step_over_adam_step"] = statistics.median(ratios)
    for name in names:
        result[f"{name}_seconds_per_step"] = statistics.median(runs[name]["times"][1:])
        result[f"{name}_objective"] = runs[name]["objective"]
    if "kfac" in runs:
        result["kfac_objective"] = runs["kfac"]["objective"]
    adams = [n for n in names if n.startswith("adam")]
    if adams:
        best = min(adams, key=lambda n: runs[n]["objective"][max(runs[n]["objective"])])
        result["adam_best"] = best
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
