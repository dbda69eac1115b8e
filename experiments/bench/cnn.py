"""CNN train steps, JAX vs PyTorch eager, on the same batch in the same process.

    python -m experiments.bench.cnn [--rounds 7] [--steps 10] [--cases cnn,resnet] [--investigate]

Cases (issue 5): the small CNN of ``jaxdl.models.cnn`` (conv 32 -> pool -> conv 64 -> pool
-> dense 128 -> 10) on 28x28x1, batch 128; and ResNet-18 with the CIFAR stem
(``jaxdl.models.resnet``, BatchNorm in training mode) on 32x32x3, batch 32. Both sides use
AdamW (lr 1e-3, weight decay 1e-4; torch ``fused=True``) and softmax cross-entropy. The
small CNN's PyTorch twin gets the JAX initial weights (kernels transposed HWIO -> OIHW, the
dense rows permuted from NHWC to NCHW flattening order), so the first losses must agree;
the ResNet twin keeps PyTorch's default initialization (timing does not depend on values).

Rows: ``jax`` is the library's step as the trainer compiles it (the model as built, XLA
options from :func:`jaxdl.xla_cpu.compiler_options`: Eigen convolutions on CPU); ``jax
forward only``; ``jax ynnpack``, the same step with XLA's default options (YNNPACK
convolutions); for the small CNN also ``jax conv_fast`` (``CurvatureConv`` through
``jaxdl.models.conv_fast``, Eigen), ``jax ynnpack conv_fast`` (the default before
``jaxdl.xla_cpu``), ``jax, 4 unrolled`` (the default with 4 unrolled microbatches) and ``jax
ynnpack conv_fast, 4 unrolled``: the fastest recipe, all trainer options (``model.fast_conv
=True``, ``xla_cpu_convolutions="ynnpack"``, ``microbatches=4``, ``microbatch_mode=
"unroll"``; YNNPACK runs each convolution on one core, four independent passes keep both
busy); PyTorch with ``channels_last``. ``--investigate`` adds the small CNN
written directly with ``lax.conv_general_dilated`` in NHWC/HWIO and in NCHW/OIHW layout,
and with max-pooling as ``lax.reduce_window`` (whose backward, ``select_and_scatter``, was
the largest single cost of the step on this CPU: ~6x slower than a reshape-and-max pool,
which ``jaxdl.models.conv.max_pool`` now uses). XLA's FLOP count (``cost_analysis``) gives
GFLOP/s. (Rows named in the older measurements below: ``jax lax conv`` is today's ``jax``
under YNNPACK, i.e. ``jax ynnpack``.)

Method (shared/BENCHMARKING.md): compile first, then interleave the variants round by
round (``--steps`` steps each) and report medians of per-round ratios to PyTorch (NCHW).
Last line: JSON with ``cnn_jax_over_torch`` and ``resnet_jax_over_torch`` (the default
step), ``cnn_ynnpack_conv_fast_4_unrolled_over_torch`` (the fastest recipe) and the others.

Measured 2026-11-30 (``--rounds 3 --steps 4``, 494 s wall; jax 0.10.2, torch 2.13.0 CPU,
2 cores shared with 3 other engineers' jobs, load average ~12, so absolute times are slow
and noisy): small CNN 1.69x PyTorch eager (was 2.92x in the same conditions before the
max-pool change; the goal of <= 1.0x is not reached), ResNet-18/32x32 2.31x. The forward
pass is only 15-16% of the JAX step and alone runs at 0.28-0.32x PyTorch's whole step, so
the gap is in the backward convolutions; NCHW layout is slower than NHWC in XLA:CPU
(3.08x vs 1.52x for the lax-written CNN); an im2col-matmul weight gradient was no faster.

Quiet machine, 2026-12-01 02:10-02:35 UTC, after :mod:`jaxdl.xla_cpu` (the trainer compiles
convolutional steps with YNNPACK off: Eigen convolutions use both cores, YNNPACK's one):
``--rounds 7 --steps 5 --cases cnn``: **1.43x** (61.0 vs 42.9 ms) and, with
``--investigate``, **1.35x** (54.1 vs 39.0 ms); a third run at 03:11 UTC (``--rounds 7
--steps 5``, both cases): **1.45x** (56.8 vs 39.1 ms), with 4 unrolled microbatches (``jax,
4 unrolled``) 1.38x, ResNet-18 **1.32x** (1081 vs 817 ms; YNNPACK 1.86x); in the first two
runs XLA's default (``jax ynnpack``) 2.12x / 2.22x, the previous default (YNNPACK +
``conv_fast``) 1.77x / 1.70x, ``conv_fast`` under Eigen 1.49x / 1.54x (so ``CurvatureConv``
no longer uses it by default); the lax-written CNN 1.43x (NHWC), 1.49x (NCHW), 2.70x
(``reduce_window`` pool). ResNet-18 (``--cases resnet --rounds 3 --steps 3``): **1.36x**
(1141 vs 844 ms; YNNPACK 1.85x). Goal (<= 1.0x) NOT met. Where the rest goes (scratch A/Bs
of the lax-written CNN, Eigen): the second convolution ~23 ms of a ~44-54 ms step (forward
5.6, input gradient 6.2, weight gradient 7.3 ms alone), the first ~9 ms; pooling before bias
+ ReLU (equal for monotone activations), a max-pool backward without tie counting and the
bias gradient as a matmul were each within noise.

Latest, 2026-12-01 05:29-05:33 UTC, quiet, ``--rounds 7 --steps 5``, after two changes. (1)
:mod:`jaxdl.xla_cpu` now keeps YNNPACK's matmul and reduction fusions and sends only the
convolutions to Eigen (before: no YNNPACK fusions at all; XLA's own reductions, BatchNorm's
backward above all, were the slow part left). (2) :mod:`jaxdl.host_memory`: ``import jaxdl``
keeps XLA:CPU's per-step temporaries in the malloc heap instead of page-faulting them in again
every step. Results, two runs: small CNN (default step) **1.03x** / **1.00x** (37.6 vs 36.4 ms;
43.1 vs 42.1 ms), ResNet-18 **0.95x** (803 vs 847 ms; 1.01x against PyTorch channels_last):
goal (<= 1.0x) met for ResNet-18 and at parity for the small CNN's default step. The fastest
small-CNN recipe, ``jax ynnpack conv_fast, 4 unrolled`` (all trainer options): **0.94x** /
**0.92x**. Before (1) and after (2), 04:44-05:16 UTC: default 1.17-1.22x (1.55x in a run just
before (2)), ResNet-18 1.28-1.29x, the recipe 0.94-0.98x in three runs; 8 or 2 unrolled
microbatches 1.12x / 1.16x. Pinned to one core (``taskset -c 0``) YNNPACK + ``conv_fast`` was
0.98x and the default 1.18x.

Quiet machine, 2026-12-01 01:11 UTC (before ``jaxdl.xla_cpu``; load ~1.5, nothing else
running): ``--rounds 5 --steps 4 --cases cnn``: **1.71x** (69.6 vs 40.3 ms; plain ``lax``
convs 2.19x); ``--rounds 9 --steps 6``: **1.42x** (71.3 vs 53.2 ms; plain ``lax`` 1.82x).
Our step was steady at ~70 ms (it was ~90 ms with ``lax`` convs); PyTorch's moves between 40
and 53 ms, and it gains more than we do when the machine is idle, so the loaded-machine
ratios below flatter us. Goal (<= 1.0x) NOT met. ResNet-18/32x32 (``--cases resnet --rounds
3 --steps 3``): 1.81x (1510 vs 825 ms); with ``conv_fast`` also in ``ConvNorm`` and the
basic block's second conv: 1.77x (1507 ms), no gain, so the ResNet keeps plain ``nnx.Conv``.
Splitting causal GPT queries in 4 or 8 pieces instead of 2 (``fused_attention``) was no
faster either.

Measured 2026-12-01 (``--rounds 7 --steps 4 --cases cnn``, load average 9-10 on the 2
cores from other jobs, so single figures move by +-0.3 between runs): small CNN **1.25x**
PyTorch with ``jaxdl.models.conv_fast`` vs **2.02x** for the same model with plain ``lax``
convolutions (``jax lax conv``) in the same run: the step is ~0.6x what it was. A rerun
at 00:37 UTC on a quieter machine (load average 5-6, ``--rounds 5 --steps 4 --cases cnn``):
**1.08x** (104 ms/step) vs **1.35x** (131 ms) with plain ``lax``, PyTorch 100 ms. (With only
the first layer's patch-matmul weight gradient, before the chunked one: 1.57x vs 1.77x.)
The XLA profile of the old step (``jax.profiler.trace``) had ~35% of the op time in the
second conv's weight-gradient convolution (a YNNPACK fusion, ~3x PyTorch's
``convolution_backward`` for the weight) and ~9% in the first conv's; splitting the batch
into chunks of 4 examples made the second 2-3x faster, a patch matmul the first ~3x.
Tried and slower for the 32-channel layer: patches + matmul (strided slices, flat-row
slices, transposed layout, gather, nine per-tap matmuls) and a convolution with the batch
as contraction; the input gradient as a forward convolution with the flipped kernel made no
measurable difference; the ``xla_cpu_experimental_{xnn,ynn}_fusion_type`` and oneDNN flags
did not help. ResNet-18/32x32 (unchanged: its layers are plain ``nnx.Conv``), measured
under load average 12 alongside these experiments: 4.43x (``--rounds 3 --steps 3``), not
comparable with the 2.31x above. The goal of <= 1.0x is not reached on this loaded machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxdl import functional, host_memory, xla_cpu  # noqa: E402
from jaxdl.models import MODELS, conv_fast  # noqa: E402
from jaxdl.parallel.accumulate import accumulated_value_and_grad  # noqa: E402

LR, WD = 1e-3, 1e-4


def jax_stepper(graphdef, params, state, x, y, train=True, options=None, unrolled=1):
    """A donated ``jax.jit`` AdamW step compiled with XLA ``options``, the gradient over
    ``unrolled`` independent microbatches (``jaxdl.parallel.accumulate``, ``unroll=True``);
    returns (run n steps, forward-only fn, flops, [first loss])."""
    tx = optax.adamw(LR, weight_decay=WD)
    opt_state = tx.init(params)

    batch = {"x": x, "y": y}

    def batch_loss(p, s, batch, rng):
        logits, new_s = functional.apply(graphdef, p, s, batch["x"], train=train)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, ({}, new_s)

    grad_fn = accumulated_value_and_grad(batch_loss, unrolled, unroll=True)

    def step(p, s, o):
        (loss, (_, new_s)), grads = grad_fn(p, s, batch, None)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), new_s, o, loss

    compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(params, state, opt_state).compile(
        compiler_options=options)
    flops = float(compiled.cost_analysis().get("flops", 0.0))
    forward = jax.jit(lambda p, s: batch_loss(p, s, batch, None)[0]).lower(params, state).compile(
        compiler_options=options)
    carry = [params, state, opt_state]
    first = []

    def run(n):
        for _ in range(n):
            p, s, o, loss = compiled(*carry)
            carry[:] = [p, s, o]
            if not first:
                first.append(float(loss))
        loss.block_until_ready()

    def run_forward(n):
        for _ in range(n):
            out = forward(carry[0], carry[1])
        out.block_until_ready()

    return run, run_forward, flops, first


def lax_cnn_stepper(params, x, y, layout: str, pool: str = "reshape", options=None):
    """The small CNN as plain lax ops in ``layout`` (NHWC or NCHW), same weights; ``pool``
    is ``reshape`` (max over a reshaped view) or ``reduce_window`` (XLA's generic window
    reduction, whose gradient is a ``select_and_scatter``)."""
    tx = optax.adamw(LR, weight_decay=WD)
    p = jax.tree.map(jnp.copy, {"c0": params["convs"][0], "c1": params["convs"][1],
                                "d": params["dense"], "h": params["head"]})
    if layout == "NCHW":
        x = jnp.transpose(x, (0, 3, 1, 2))
        dims, kern, window = ("NCHW", "OIHW", "NCHW"), (3, 2, 0, 1), (1, 1, 2, 2)
        for c in ("c0", "c1"):
            p[c] = {"kernel": jnp.transpose(p[c]["kernel"], kern), "bias": p[c]["bias"]}
    else:
        dims, window = ("NHWC", "HWIO", "NHWC"), (1, 2, 2, 1)
    bias_shape = (1, -1, 1, 1) if layout == "NCHW" else (1, 1, 1, -1)

    def loss_fn(p):
        h = x
        for c in ("c0", "c1"):
            h = jax.lax.conv_general_dilated(h, p[c]["kernel"], (1, 1), "SAME",
                                             dimension_numbers=dims)
            h = jax.nn.relu(h + p[c]["bias"].reshape(bias_shape))
            if pool == "reduce_window":
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, window, window, "VALID")
            elif layout == "NCHW":
                b, c, hh, ww = h.shape
                h = h.reshape(b, c, hh // 2, 2, ww // 2, 2).max((3, 5))
            else:
                b, hh, ww, c = h.shape
                h = h.reshape(b, hh // 2, 2, ww // 2, 2, c).max((2, 4))
        h = h.reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ p["d"]["kernel"] + p["d"]["bias"])
        logits = h @ p["h"]["kernel"] + p["h"]["bias"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(p, o):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    opt_state = tx.init(p)
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(p, opt_state).compile(
        compiler_options=options)
    carry = [p, opt_state]

    def run(n):
        for _ in range(n):
            new_p, o, loss = compiled(*carry)
            carry[:] = [new_p, o]
        loss.block_until_ready()

    return run


def torch_cnn(params, x, y, channels_last=False):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = torch.nn.Conv2d(1, 32, 3, padding=1)
            self.c1 = torch.nn.Conv2d(32, 64, 3, padding=1)
            self.d = torch.nn.Linear(7 * 7 * 64, 128)
            self.h = torch.nn.Linear(128, 10)

        def forward(self, z):
            z = torch.max_pool2d(torch.relu(self.c0(z)), 2)
            z = torch.max_pool2d(torch.relu(self.c1(z)), 2)
            return self.h(torch.relu(self.d(z.flatten(1))))

    net = Net()
    with torch.no_grad():
        for name, i in (("c0", 0), ("c1", 1)):
            conv = params["convs"][i]
            getattr(net, name).weight.copy_(torch.from_numpy(
                np.asarray(conv["kernel"]).transpose(3, 2, 0, 1).copy()))
            getattr(net, name).bias.copy_(torch.from_numpy(np.asarray(conv["bias"])))
        dense = np.asarray(params["dense"]["kernel"]).reshape(7, 7, 64, 128)
        net.d.weight.copy_(torch.from_numpy(dense.transpose(2, 0, 1, 3).reshape(-1, 128).T.copy()))
        net.d.bias.copy_(torch.from_numpy(np.asarray(params["dense"]["bias"])))
        net.h.weight.copy_(torch.from_numpy(np.asarray(params["head"]["kernel"]).T.copy()))
        net.h.bias.copy_(torch.from_numpy(np.asarray(params["head"]["bias"])))
    return _torch_stepper(net, np.asarray(x).transpose(0, 3, 1, 2), y, channels_last)


def torch_resnet18(x, y, channels_last=False):
    import torch

    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                           nn.BatchNorm2d(cout))

        def forward(self, z):
            out = self.b2(self.c2(torch.relu(self.b1(self.c1(z)))))
            return torch.relu(out + (z if self.short is None else self.short(z)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU())
            layers, cin = [], 64
            for stage, width in enumerate((64, 128, 256, 512)):
                for i in range(2):
                    layers.append(Block(cin, width, 2 if stage and i == 0 else 1))
                    cin = width
            self.layers = nn.Sequential(*layers)
            self.head = nn.Linear(512, 10)

        def forward(self, z):
            return self.head(self.layers(self.stem(z)).mean((2, 3)))

    return _torch_stepper(ResNet18(), np.asarray(x).transpose(0, 3, 1, 2), y, channels_last)


def _torch_stepper(net, x, y, channels_last):
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(np.asarray(y).astype(np.int64))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WD, fused=True)
    first = []

    def run(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(xt), yt)
            loss.backward()
            opt.step()
            if not first:
                first.append(float(loss))

    return run, first


def interleave(runs: dict, rounds: int, steps: int) -> dict[str, list[float]]:
    """Per-variant lists of seconds per step, variants alternated within each round."""
    for run in runs.values():
        run(2)  # warm-up
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(steps)
            times[name].append((time.perf_counter() - t0) / steps)
    return times


def bench_case(case: str, rounds: int, steps: int, investigate: bool = False) -> dict:
    key = jax.random.key(0)
    if case == "cnn":
        section, shape, batch = {"name": "cnn", "features": (32, 64), "hidden": 128}, \
            (28, 28, 1), 128
    else:
        section, shape, batch = {"name": "resnet", "depth": 18, "stem": "cifar"}, \
            (32, 32, 3), 32
    model = MODELS.build(section, field="model", input_shape=shape, num_classes=10,
                         rngs=nnx.Rngs(0))
    options = xla_cpu.compiler_options(model)  # what the trainer compiles with
    graphdef, params, state = functional.split_model(model)
    x = jax.random.uniform(key, (batch, *shape))
    y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
    fresh = lambda: jax.tree.map(jnp.copy, (params, state))  # noqa: E731 (steps donate)
    jax_run, jax_forward, flops, jax_first = jax_stepper(graphdef, *fresh(), x, y,
                                                         options=options)
    runs = {"jax": jax_run, "jax forward only": jax_forward,
            "jax ynnpack": jax_stepper(graphdef, *fresh(), x, y)[0]}
    if case == "cnn":
        # The same model with CurvatureConv's fast convolution (jaxdl.models.conv_fast) on.
        fast = MODELS.build({**section, "fast_conv": True}, field="model", input_shape=shape,
                            num_classes=10, rngs=nnx.Rngs(0))
        assert all(c.conv_general_dilated is conv_fast.conv_general_dilated for c in fast.convs)
        fg, fp, fs = functional.split_model(fast)
        fresh_fast = lambda: jax.tree.map(jnp.copy, (fp, fs))  # noqa: E731
        runs["jax conv_fast"] = jax_stepper(fg, *fresh_fast(), x, y, options=options)[0]
        runs["jax ynnpack conv_fast"] = jax_stepper(fg, *fresh_fast(), x, y)[0]
        runs["jax, 4 unrolled"] = jax_stepper(graphdef, *fresh(), x, y, options=options,
                                              unrolled=4)[0]
        # The fastest recipe found: YNNPACK runs each convolution on one core, so four
        # independent passes (unrolled microbatches) keep both cores busy.
        runs["jax ynnpack conv_fast, 4 unrolled"] = jax_stepper(
            fg, *fresh_fast(), x, y, unrolled=4)[0]
        if investigate:
            runs["jax lax NHWC"] = lax_cnn_stepper(params, x, y, "NHWC", options=options)
            runs["jax lax NCHW"] = lax_cnn_stepper(params, x, y, "NCHW", options=options)
            runs["jax lax NHWC rw-pool"] = lax_cnn_stepper(params, x, y, "NHWC",
                                                           "reduce_window", options=options)
        torch_run, torch_first = torch_cnn(params, x, y)
        runs["torch"] = torch_run
        runs["torch channels_last"] = torch_cnn(params, x, y, channels_last=True)[0]
    else:
        torch_run, torch_first = torch_resnet18(x, y)
        runs["torch"] = torch_run
        runs["torch channels_last"] = torch_resnet18(x, y, channels_last=True)[0]
    times = interleave(runs, rounds, steps)
    ratios = {name: statistics.median(a / b for a, b in zip(t, times["torch"]))
              for name, t in times.items()}
    return {"times": {k: statistics.median(v) for k, v in times.items()}, "ratios": ratios,
            "flops": flops, "first_loss": (jax_first[0], torch_first[0])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cases", default="cnn,resnet")
    parser.add_argument("--investigate", action="store_true",
                        help="also time the lax-written CNN (NHWC, NCHW, reduce_window pool)")
    args = parser.parse_args(argv)
    import torch

    print(f"jax {jax.__version__}, torch {torch.__version__}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}")
    summary = {"host_malloc": host_memory.status()}
    for case in args.cases.split(","):
        result = bench_case(case, args.rounds, args.steps, args.investigate)
        jax_step = result["times"]["jax"]
        print(f"\n{case}: XLA {result['flops'] / 1e9:.3f} GFLOP per step, "
              f"{result['flops'] / jax_step / 1e9:.1f} GFLOP/s; first losses JAX "
              f"{result['first_loss'][0]:.4f} / torch {result['first_loss'][1]:.4f}")
        print(f"{'variant':<34}{'ms/step':>10}{'over torch':>12}")
        for name, t in result["times"].items():
            print(f"{name:<34}{t * 1e3:>10.2f}{result['ratios'][name]:>12.2f}")
        summary[f"{case}_jax_over_torch"] = round(result["ratios"]["jax"], 3)
        summary[f"{case}_jax_over_torch_channels_last"] = round(
            result["ratios"]["jax"] / result["ratios"]["torch channels_last"], 3)
        summary[f"{case}_forward_fraction"] = round(
            result["times"]["jax forward only"] / jax_step, 3)
        summary[f"{case}_gflops_per_s"] = round(result["flops"] / jax_step / 1e9, 2)
        summary[f"{case}_ynnpack_over_torch"] = round(result["ratios"]["jax ynnpack"], 3)
        if case == "cnn":
            for name, key in (("jax, 4 unrolled", "cnn_4_unrolled"),
                              ("jax conv_fast", "cnn_conv_fast"),
                              ("jax ynnpack conv_fast", "cnn_ynnpack_conv_fast"),
                              ("jax ynnpack conv_fast, 4 unrolled",
                               "cnn_ynnpack_conv_fast_4_unrolled"),
                              ("jax lax NCHW", "cnn_lax_nchw"), ("jax lax NHWC", "cnn_lax_nhwc"),
                              ("jax lax NHWC rw-pool", "cnn_lax_nhwc_rw_pool")):
                if name in result["ratios"]:
                    summary[f"{key}_over_torch"] = round(result["ratios"][name], 3)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
