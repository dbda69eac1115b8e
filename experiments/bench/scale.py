"""Training at scale on 8 simulated CPU devices: FSDP memory, pipeline bubble, bf16 step time.

    python -m experiments.bench.scale [--rounds 5]

1. FSDP memory (deterministic). A GPT (4 layers, d_model 256, 4 heads, vocab 65, seq 256)
   with Adam: the step-0 TrainState (parameters + Adam moments + counters) is created by
   ``jax.jit(init, out_shardings=...)`` under the ``fsdp`` preset (ZeRO-3: every parameter
   and its moments split along their largest dimension divisible by 8) and under ``dp``
   (replicated) on the same 8-device mesh, with the rules of :mod:`jaxdl.parallel.rules`.
   Per-device bytes: ``compiled.memory_analysis().output_size_in_bytes`` of the init, checked
   against the bytes of the shards the devices actually hold. Goal: fsdp / replicated
   <= 1.15 / 8.
2. Pipeline bubble. 4 stages x 8 microbatches of a residual-MLP stack (8 layers, width 512,
   microbatch 64) under 1F1B (:mod:`jaxdl.parallel.pipeline`). ``schedule``: idle ticks over
   all ticks counted from the executed tick table (the compiled program runs exactly that
   table). ``timing``: the same pipeline timed at M = 8 and M = 16, ``2 - T(16) / T(8)``
   (an ideal pipeline takes time proportional to M + S - 1). ``timing_naive``:
   ``1 - M (t_fwd + t_bwd) / T(8)`` with one stage's forward and backward timed alone on one
   device. ``lockstep``: the executor advances all stages tick by tick, so a tick lasts as
   long as its slowest stage; with the measured t_fwd, t_bwd this gives the time-weighted
   bubble (:func:`~jaxdl.parallel.pipeline_schedules.lockstep_bubble`). Also printed: the
   step's process CPU time over S x one stage's work (the executor's CPU overhead) and the
   cores the 4 simulated devices actually got. Theory: (S - 1) / (M + S - 1).
3. bf16 vs f32 train step of a small GPT (:func:`jaxdl.parallel.remat.step_time_bf16_vs_f32`:
   bf16 compute with float32 master weights, interleaved rounds, median).

Last line: JSON with ``fsdp_bytes_over_replicated``, ``pipeline_bubble_measured`` (the
schedule count), ``pipeline_bubble_theory``, ``pipeline_bubble_timing`` (and ``_naive``),
``bf16_over_f32_step`` and the raw figures.

Measured 2026-11-30 20:30-21:07 UTC (jax 0.10.2), 6 runs (``--rounds 5`` once, then
``--rounds 7``; the executor changed only in per-tick bookkeeping between them), 1 min 9 s
to 3 min 25 s each, on the 2-core machine shared with six other sessions (load average
8-18; the 4 simulated stages got 0.5-1.1 cores):

* fsdp / replicated per-device bytes: 0.1250 (4.66 MiB vs 37.29 MiB; goal 1.15 / 8 = 0.144:
  met), identical in every run; the shards the devices hold agree to 0.03%.
* bubble, schedule count: 0.2727 = theory 3 / 11 exactly (goal within 5 points: met). By
  timing the goal is NOT met and cannot be on this machine: the four simulated devices share
  0.5-1.1 cores, so stages do not run concurrently and wall time is set by total CPU work.
  ``timing`` ranged -0.92 to +0.15 over the runs (noise), ``timing_naive`` 0.72-0.81
  (about 1 - cores / S: all four stages' work is serialised). The lockstep model with the
  measured backward/forward ratio (2.4-3.9; the backward recomputes the stage forward)
  gives 1F1B 0.45-0.47 but GPipe 0.27 (last two runs): in lockstep a 1F1B tick mixing a
  forward and a backward lasts a backward; GPipe never mixes them. Step CPU / (S x stage
  work): 0.47, 0.78, 1.06 (the lowest-load run; < 1 where the single-stage timings were
  inflated by load): the executor's bookkeeping and idle ticks cost little CPU.
* bf16 / f32 step: 0.74, 0.96, 0.99, 1.11, 1.22, 1.72 over six runs: noise under this
  load; re-measure on an idle machine.
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxdl.models.transformer_models import GPT  # noqa: E402
from jaxdl.parallel.mesh import make_mesh_for  # noqa: E402
from jaxdl.parallel.pipeline import (  # noqa: E402
    PipelineParts,
    make_stage_mesh,
    pipeline_loss_and_grads,
)
from jaxdl.parallel.pipeline_schedules import (  # noqa: E402
    bubble_theory,
    build_schedule,
    lockstep_bubble,
)
from jaxdl.parallel.remat import step_time_bf16_vs_f32  # noqa: E402
from jaxdl.parallel.sharded_init import make_init, per_device_bytes, state_shardings  # noqa: E402


def fsdp_memory(num_devices: int = 8) -> dict:
    """Per-device bytes of parameters + Adam state, fsdp vs replicated (dp)."""
    factory = lambda rngs: GPT(65, 256, d_model=256, num_layers=4, num_heads=4,  # noqa: E731
                               rngs=rngs)
    init = make_init(factory, optax.adam(1e-3))
    key = jax.random.key(0)
    out = {}
    for preset in ("dp", "fsdp"):
        mesh = make_mesh_for(preset, num_devices)
        shardings = state_shardings(jax.eval_shape(init, key), mesh, preset)
        jitted = jax.jit(init, out_shardings=shardings)
        compiled = jitted.lower(key).compile()
        held = per_device_bytes(jitted(key))
        out[preset] = {"memory_analysis_bytes": int(compiled.memory_analysis()
                                                    .output_size_in_bytes),
                       "max_held_bytes": max(held.values())}
    out["fsdp_bytes_over_replicated"] = (out["fsdp"]["memory_analysis_bytes"]
                                         / out["dp"]["memory_analysis_bytes"])
    return out


def mlp_pipeline(num_layers: int, width: int, seed: int = 0):
    """Residual MLP blocks ``h + W2 gelu(W1 h)`` between a linear embedding and a softmax."""
    keys = jax.random.split(jax.random.key(seed), 4)
    params = {
        "embed": {"w": jax.random.normal(keys[0], (32, width)) / np.sqrt(32)},
        "layers": {"w1": jax.random.normal(keys[1], (num_layers, width, width)) / np.sqrt(width),
                   "w2": jax.random.normal(keys[2], (num_layers, width, width)) / width},
        "head": {"w": jax.random.normal(keys[3], (width, 10)) / np.sqrt(width)},
    }
    parts = PipelineParts(
        embed=lambda p, x: x @ p["w"],
        layer=lambda p, h: h + jax.nn.gelu(h @ p["w1"]) @ p["w2"],
        head_loss=lambda p, h, y: optax.softmax_cross_entropy_with_integer_labels(
            h @ p["w"], y).mean())
    return parts, params


def pipeline_bubble(stages: int = 4, microbatches: int = 8, microbatch: int = 64,
                    width: int = 512, layers: int = 8, rounds: int = 5) -> dict:
    """Bubble of the 1F1B pipeline: from the schedule table and from timing.

    Each round times, in turn, the pipeline step at M and 2M microbatches and one stage's
    forward and backward alone on one device; the per-round bubble estimates are
    ``2 - T(2M) / T(M)`` (ideal pipeline: T(M) proportional to M + S - 1) and
    ``1 - M (t_fwd + t_bwd) / T(M)``; we report their medians.
    """
    parts, params = mlp_pipeline(layers, width)
    mesh = make_stage_mesh(stages)
    calls = {}
    for m in (microbatches, 2 * microbatches):
        schedule = build_schedule("1f1b", stages, m)
        x = jax.random.normal(jax.random.key(m), (m * microbatch, 32))
        y = jax.random.randint(jax.random.key(m + 1), (m * microbatch,), 0, 10)
        calls[f"step_{m}"] = (jax.jit(lambda p, x, y, s=schedule: pipeline_loss_and_grads(
            parts, p, x, y, mesh=mesh, schedule=s)), (params, x, y))
    # one stage alone on one device: forward, and backward with its forward recomputed
    stage_params = jax.tree.map(lambda a: a[: layers // stages], params["layers"])
    h = jax.random.normal(jax.random.key(7), (microbatch, width))
    calls["stage_fwd"] = (jax.jit(parts.stage), (stage_params, h))
    calls["stage_bwd"] = (jax.jit(lambda p, h, g: jax.vjp(parts.stage, p, h)[1](g)),
                          (stage_params, h, h))
    for fn, args in calls.values():  # compile and warm up
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in calls}
    cpu = {name: [] for name in calls}  # process CPU seconds, all device threads together
    for _ in range(rounds):  # interleaved, so load drift hits every measurement alike
        for name, (fn, args) in calls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    small, large = (np.asarray(times[f"step_{m}"]) for m in (microbatches, 2 * microbatches))
    work = microbatches * (np.asarray(times["stage_fwd"]) + np.asarray(times["stage_bwd"]))
    schedule = build_schedule("1f1b", stages, microbatches)
    return {
        "stages": stages, "microbatches": microbatches, "ticks": schedule.num_ticks,
        "schedule": schedule.bubble_fraction(),
        "theory": bubble_theory(stages, microbatches),
        "timing": float(np.median(2.0 - large / small)),
        "timing_naive": float(np.median(1.0 - work / small)),
        # every tick as long as its slowest stage, with the measured forward/backward times
        "lockstep_1f1b": float(np.median([lockstep_bubble(schedule, f, b) for f, b in zip(
            times["stage_fwd"], times["stage_bwd"])])),
        "lockstep_gpipe": float(np.median([lockstep_bubble(
            build_schedule("gpipe", stages, microbatches), f, b) for f, b in zip(
            times["stage_fwd"], times["stage_bwd"])])),
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        # CPU of the whole pipeline step over S x (work of one stage): ~1 means idle ticks
        # and the schedule machinery cost little CPU; wall time is then set by how many
        # cores the S simulated devices really get.
        "cpu_over_stage_work": statistics.median(cpu[f"step_{microbatches}"])
        / (stages * statistics.median(work)),
        "cores_used": statistics.median(cpu[f"step_{microbatches}"])
        / statistics.median(times[f"step_{microbatches}"]),
        "peak_stash_1f1b": int(schedule.peak_stash.max()),
        "peak_stash_gpipe": int(build_schedule("gpipe", stages, microbatches)
                                .peak_stash.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if jax.device_count() < 8:
        raise SystemExit(f"needs 8 devices, found {jax.device_count()} (XLA_FLAGS was set "
                         "before this module? unset it or add the device count)")
    memory = fsdp_memory()
    print(f"fsdp: per-device state {memory['fsdp']['memory_analysis_bytes'] / 2**20:.2f} MiB "
          f"vs replicated {memory['dp']['memory_analysis_bytes'] / 2**20:.2f} MiB: ratio "
          f"{memory['fsdp_bytes_over_replicated']:.4f} (goal <= {1.15 / 8:.4f})")
    bubble = pipeline_bubble(rounds=args.rounds)
    print(f"pipeline 1F1B S={bubble['stages']} M={bubble['microbatches']}: bubble theory "
          f"{bubble['theory']:.4f}, schedule {bubble['schedule']:.4f}, timing "
          f"{bubble['timing']:.4f} (naive {bubble['timing_naive']:.4f}), lockstep model 1F1B "
          f"{bubble['lockstep_1f1b']:.4f} GPipe {bubble['lockstep_gpipe']:.4f}; median seconds "
          f"{bubble['median_s']}; peak stash 1F1B {bubble['peak_stash_1f1b']} vs GPipe "
          f"{bubble['peak_stash_gpipe']}; step CPU / (S x stage work) "
          f"{bubble['cpu_over_stage_work']:.2f}, cores used {bubble['cores_used']:.2f}")
    precision = step_time_bf16_vs_f32(rounds=args.rounds)
    print(f"bf16 step {precision['bf16_step_s'] * 1e3:.1f} ms vs f32 "
          f"{precision['f32_step_s'] * 1e3:.1f} ms: ratio {precision['bf16_over_f32_step']:.3f}")
    print(json.dumps({
        "fsdp_bytes_over_replicated": memory["fsdp_bytes_over_replicated"],
        "pipeline_bubble_measured": bubble["schedule"],
        "pipeline_bubble_theory": bubble["theory"],
        "pipeline_bubble_timing": bubble["timing"],
        "pipeline_bubble_timing_naive": bubble["timing_naive"],
        "bf16_over_f32_step": precision["bf16_over_f32_step"],
        "fsdp": memory, "pipeline": bubble, "precision": precision,
    }))


if __name__ == "__main__":
    main()
