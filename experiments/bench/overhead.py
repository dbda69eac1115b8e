"""Trainer overhead: jaxdl's compiled train step vs a minimal hand-written ``jax.jit`` step.

    python -m experiments.bench.overhead [--rounds 10] [--steps 20] [--cases mlp]

Both sides train the same model (same graphdef, initial parameters and optax optimizer) on
the same device-resident batch with donated buffers. The trainer step additionally carries
the TrainState (step counter, PRNG key folded per step), computes accuracy and the global
gradient norm and goes through its batch check and explicit shardings. Method
(shared/BENCHMARKING.md): compile both first, then alternate A, B, A, B... rounds of
``--steps`` steps, and report the median of the per-round time ratios. A third row, the
"loop" column, adds what the training loop does per step on the host (next batch from the
iterator, ``device_put``).

Last line: one JSON object, ``{"trainer_over_minimal": <median ratio>, ...}``; goal <= 1.05.
Measured figures are in the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import optax
from flax import nnx

from jaxdl.config import base_config
from jaxdl.data import BatchIterator
from jaxdl.train import build_experiment

CASES = {
    "quickstart cnn, digits 8x8, batch 64": {},
    "cnn 28x28, batch 64": {
        "data": {"name": "synthetic", "num_train": 1024, "num_eval": 256,
                 "input_shape": (28, 28, 1), "num_classes": 10},
        "batch_size": 64,
    },
    "mlp 784-1024-1024-10, batch 256": {
        "data": {"name": "synthetic", "num_train": 2048, "num_eval": 256,
                 "input_shape": (28, 28, 1), "num_classes": 10},
        "model": {"name": "mlp", "hidden": (1024, 1024)},
        "batch_size": 256,
    },
}


def minimal_step_fn(graphdef, tx):
    """The smallest correct train step for the same model and optimizer."""

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = nnx.merge(graphdef, p, {})(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step.__wrapped__, donate_argnums=(0, 1))


def run_case(overrides: dict, rounds: int, steps: int) -> dict:
    config = base_config()
    config.mesh.data = 1
    for key, value in overrides.items():
        config[key] = value
    experiment = build_experiment(config)
    host_batches = BatchIterator(experiment.dataset.train, config.batch_size, seed=0)
    batch = jax.device_put(next(host_batches), experiment.batch_sharding)
    minimal = minimal_step_fn(experiment.graphdef, experiment.tx)

    state = experiment.init_state()
    fresh = experiment.init_state()
    params, opt_state = fresh.params, fresh.opt_state

    t0 = time.perf_counter()
    compiled = experiment.train_step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))
    state, _ = experiment.train_step(state, batch)  # warm-up (and the one batch check)
    params, opt_state, _ = minimal(params, opt_state, batch["x"], batch["y"])

    def time_trainer():
        nonlocal state
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = experiment.train_step(state, batch)
        jax.block_until_ready(metrics["loss"])
        return (time.perf_counter() - start) / steps

    def time_loop():
        nonlocal state
        start = time.perf_counter()
        for _ in range(steps):
            placed = jax.device_put(next(host_batches), experiment.batch_sharding)
            state, metrics = experiment.train_step(state, placed)
        jax.block_until_ready(metrics["loss"])
        return (time.perf_counter() - start) / steps

    def time_minimal():
        nonlocal params, opt_state
        start = time.perf_counter()
        for _ in range(steps):
            params, opt_state, loss = minimal(params, opt_state, batch["x"], batch["y"])
        jax.block_until_ready(loss)
        return (time.perf_counter() - start) / steps

    time_trainer(), time_minimal(), time_loop()  # settle caches and threads
    step_ratios, loop_ratios, minimal_times, trainer_times = [], [], [], []
    for _ in range(rounds):
        m1 = time_minimal()
        t = time_trainer()
        m2 = time_minimal()
        loop = time_loop()
        step_ratios.append(t / m1)
        loop_ratios.append(loop / m2)
        minimal_times += [m1, m2]
        trainer_times.append(t)
    median_minimal = statistics.median(minimal_times)
    return {
        "trainer_over_minimal": statistics.median(step_ratios),
        "loop_over_minimal": statistics.median(loop_ratios),
        "minimal_ms": 1e3 * median_minimal,
        "trainer_ms": 1e3 * statistics.median(trainer_times),
        "gflops_per_s": flops / median_minimal / 1e9,
        "compile_s": compile_s,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--cases", default="", help="only cases whose name contains this")
    args = parser.parse_args(argv)
    cases = {name: o for name, o in CASES.items() if args.cases in name}
    if not cases:
        parser.error(f"--cases={args.cases!r} matches none of {list(CASES)}")
    results = {name: run_case(o, args.rounds, args.steps) for name, o in cases.items()}

    header = (f"{'case':<36} {'minimal ms':>10} {'trainer ms':>10} {'step ratio':>10} "
              f"{'loop ratio':>10} {'GFLOP/s':>8} {'compile s':>9}")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"{args.rounds} rounds x {args.steps} steps, medians")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<36} {r['minimal_ms']:>10.3f} {r['trainer_ms']:>10.3f} "
              f"{r['trainer_over_minimal']:>10.3f} {r['loop_over_minimal']:>10.3f} "
              f"{r['gflops_per_s']:>8.1f} {r['compile_s']:>9.2f}")
    first = results[next(iter(cases))]
    summary = {
        "trainer_over_minimal": first["trainer_over_minimal"],
        "trainer_over_minimal_worst": max(r["trainer_over_minimal"] for r in results.values()),
        "loop_over_minimal": first["loop_over_minimal"],
        "cases": {name: {k: round(v, 4) for k, v in r.items()} for name, r in results.items()},
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
