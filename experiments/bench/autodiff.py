"""Autodiff costs: HVP vs gradient, vmapped vs looped per-example gradients, remat memory.

    python -m experiments.bench.autodiff [--rounds 10]

* ``hvp_over_grad``: one forward-over-reverse Hessian-vector product over one gradient of
  the same loss (an MLP 64-256-256-10 on a batch of 256 digits), both jitted, interleaved
  rounds, median ratio. Theory: an HVP costs a small constant times a gradient (Pearlmutter,
  1994); goal <= 3.
* ``per_example_vmap_over_loop``: per-example gradients of a batch of 64 by one ``vmap`` of
  ``grad`` over a Python loop of 64 jitted single-example gradients; goal < 0.2. Reported
  for the MLP above (82k parameters: 21 MB of per-example gradients per call) and a small
  64-64-10 MLP, and also against an eager (un-jitted) loop. Where the time goes for the big
  MLP: XLA's CPU layout assignment builds each per-example outer product ``[B, in, out]``
  transposed and then copies it into the row-major result; with ``Layout.AUTO`` outputs
  the same program runs ~10x faster, but jax 0.10 then mixes layouts wrongly when such an
  array meets a default-layout one in a later jit (we measured wrong sums), so the library
  keeps default layouts.
* ``remat_temp_memory_ratio``: compiled temporary memory of a deep MLP training step with
  full rematerialization (``nothing_saveable``) over none, from XLA's ``memory_analysis()``
  (deterministic), with the FLOP ratio beside it.

Last line: one JSON object with those three figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl import functional
from jaxdl.autodiff import per_example, products, xla_view
from jaxdl.data import load_dataset
from jaxdl.models import MODELS


def _median_ratio(fast, slow, rounds):
    """Median over rounds of time(fast) / time(slow), alternating the two."""
    ratios, times_a, times_b = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        fast()
        a = time.perf_counter() - start
        start = time.perf_counter()
        slow()
        b = time.perf_counter() - start
        ratios.append(a / b)
        times_a.append(a)
        times_b.append(b)
    return statistics.median(ratios), statistics.median(times_a), statistics.median(times_b)


def mlp_problem(batch_size, hidden=(256, 256)):
    data = load_dataset("digits")
    model = MODELS.build({"name": "mlp", "hidden": hidden}, field="model",
                         input_shape=data.input_shape, num_classes=data.num_classes,
                         rngs=nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    batch = {k: v[:batch_size] for k, v in data.train.items()}
    return graphdef, params, state, batch


def bench_hvp(rounds, repeats=20):
    graphdef, params, state, batch = mlp_problem(256)
    loss = products.model_loss_fn(graphdef, state, batch)
    grad = jax.jit(jax.grad(loss))
    hvp = jax.jit(lambda p, v: products.hessian_vector_product(loss, p, v))
    v = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape), params)
    jax.block_until_ready((grad(params), hvp(params, v)))

    def run_grad():
        for _ in range(repeats):
            out = grad(params)
        jax.block_until_ready(out)

    def run_hvp():
        for _ in range(repeats):
            out = hvp(params, v)
        jax.block_until_ready(out)

    ratio, t_hvp, t_grad = _median_ratio(run_hvp, run_grad, rounds)
    return ratio, 1e3 * t_hvp / repeats, 1e3 * t_grad / repeats


def bench_per_example(rounds, hidden=(256, 256)):
    """vmap vs a loop of jitted one-example grads vs an eager (op-by-op) loop; ms each."""
    graphdef, params, state, batch = mlp_problem(64, hidden)

    def loss(p, b):
        logits, _ = functional.apply(graphdef, p, state, b["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, b["y"]).mean()

    vmapped = jax.jit(lambda p, b: per_example.per_example_grads(loss, p, b))
    eager_grad = jax.grad(loss)  # no jit: every primitive is dispatched on its own

    def eager_loop():
        grads = [eager_grad(params, jax.tree.map(lambda a, i=i: a[i : i + 1], batch))
                 for i in range(64)]
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *grads)

    jax.block_until_ready(vmapped(params, batch))
    jax.block_until_ready(per_example.per_example_grads_loop(loss, params, batch))
    jax.block_until_ready(eager_loop())
    ratio, t_vmap, t_loop = _median_ratio(
        lambda: jax.block_until_ready(vmapped(params, batch)),
        lambda: jax.block_until_ready(per_example.per_example_grads_loop(loss, params, batch)),
        rounds)
    eager_ratio, _, t_eager = _median_ratio(
        lambda: jax.block_until_ready(vmapped(params, batch)),
        lambda: jax.block_until_ready(eager_loop()), max(3, rounds // 3))
    return ratio, eager_ratio, 1e3 * t_vmap, 1e3 * t_loop, 1e3 * t_eager


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    hvp_ratio, t_hvp, t_grad = bench_hvp(args.rounds)
    per_example_rows = {hidden: bench_per_example(args.rounds, hidden)
                        for hidden in ((256, 256), (64,))}
    rows = xla_view.remat_memory_report(depth=24, width=512, batch=256,
                                        policies=("none", "dots_saveable", "nothing_saveable"))
    by_policy = {row.policy: row for row in rows}
    remat_ratio = by_policy["nothing_saveable"].temp_ratio

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; medians of {args.rounds} "
          "interleaved rounds")
    print(f"{'measure':<52} {'value':>10} {'detail':>32}")
    print("-" * 96)
    print(f"{'HVP / gradient (MLP 64-256-256-10, b=256)':<52} {hvp_ratio:>10.3f} "
          f"{f'{t_hvp:.2f} ms vs {t_grad:.2f} ms':>32}")
    for hidden, (ratio, eager_ratio, t_vmap, t_loop, t_eager) in per_example_rows.items():
        name = "64-" + "-".join(map(str, hidden)) + "-10"
        print(f"{f'per-example vmap / jitted loop ({name}, b=64)':<52} {ratio:>10.4f} "
              f"{f'{t_vmap:.2f} ms vs {t_loop:.1f} ms':>32}")
        print(f"{f'per-example vmap / eager loop ({name}, b=64)':<52} {eager_ratio:>10.4f} "
              f"{f'{t_vmap:.2f} ms vs {t_eager:.1f} ms':>32}")
    for row in rows:
        print(f"{'remat ' + row.policy + ' (MLP 24x512, b=256) temp':<52} "
              f"{row.temp_ratio:>10.3f} "
              f"{f'{row.temp_bytes / 2**20:.1f} MiB, flops x{row.flops_ratio:.2f}':>32}")
    summary = {
        "hvp_over_grad": hvp_ratio,
        "per_example_vmap_over_loop": per_example_rows[(256, 256)][0],
        "per_example_vmap_over_eager_loop": per_example_rows[(256, 256)][1],
        "per_example_vmap_over_loop_small_mlp": per_example_rows[(64,)][0],
        "remat_temp_memory_ratio": remat_ratio,
        "remat_flops_ratio": by_policy["nothing_saveable"].flops_ratio,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
