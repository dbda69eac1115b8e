"""GPT train step: jaxdl (float32 and bfloat16 matmuls) vs PyTorch eager float32, plus the
memory of blockwise attention and the compile time of scanned layers.

    JAXDL_DATA_DIR=../shared/data python -m experiments.bench.gpt [--rounds 5] [--steps 2]

Model (issue 7): n_layer 4, n_head 4, d_model 256, seq 256, vocab 65 (tinyshakespeare
characters), batch 16, AdamW; pre-norm blocks, learned positions, GELU (tanh form). Our step
is the library's compiled train step (``build_experiment``: classification objective, optax
AdamW); PyTorch's is the same architecture in eager mode, initialised by copying our
parameters, with ``torch.optim.AdamW(fused=True)`` where available. All three steps run on
the same batch, interleaved round by round; we report median per-round ratios
(shared/BENCHMARKING.md). GFLOP/s use XLA's ``cost_analysis`` FLOPs of the float32 step for
every row; the matmul peaks are measured in the same process (2048^2 matmuls).

Also measured (deterministic, no timing): ``memory_analysis`` temp bytes of the attention
gradient at sequence 8192 (batch 1, 4 heads of 64, causal), naive vs blockwise; and the
compile time of a scanned GPT with 24 layers over one with 4 (median of interleaved pairs).

Last line: one JSON object with ``gpt_f32_over_torch``, ``gpt_bf16_over_torch_f32``,
``blockwise_temp_memory_ratio``, ``scan_compile_24_over_4`` and the raw figures.

Measured 2026-11-30 (jax 0.10.2, torch 2.13.0 CPU) on the 2-core machine shared with three
other engineers' jobs (load average 8-10, so absolute times are 2-4x the idle figures):
``--rounds 4 --steps 2 --compile-pairs 2`` gave f32 / torch 1.50, bf16 / torch 1.64 (goals
1.0 and 0.5: NOT met), blockwise temp memory ratio 0.0145 (45 MiB vs 3088 MiB; goal 1/8:
met), scanned compile 24 / 4 layers 0.83 (12.2 s vs 14.8 s, i.e. equal within noise; goal
1.3: met). The first-step losses of both frameworks agree (4.74109), so the models match.

Where the time goes (same process, interleaved, loaded machine): forward loss 2.1 s,
forward + backward 7.4 s (backward 2.5x the forward where 2x is the FLOP ratio), full step
7.6 s (AdamW and the rest are small). The attention core alone (4 layers, forward +
backward, [16 x 4] batched 256x64x256 matmuls) takes 2.0 s, about 27% of the step for 14%
of its FLOPs: XLA:CPU runs these small batched matmuls at ~6 GFLOP/s, while the dense
projections' matmuls reach ~75% of the measured float32 peak. PyTorch's fused CPU
``scaled_dot_product_attention`` is where most of its lead comes from. Tried and not
faster: ``jax.nn.dot_product_attention`` (XLA path), our blockwise kernel at block 128 or
256 (1.03-1.14x the naive step). Putting [batch, heads] first before the attention einsums
halved the attention forward. Under this load the bf16 x bf16 -> f32 matmul peak measured
only 20-29 GFLOP/s (below float32's 32-39), so the bf16 step was not faster either; both
need re-measuring on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported
_SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
if "JAXDL_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["JAXDL_DATA_DIR"] = str(_SHARED)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxdl.config import base_config  # noqa: E402
from jaxdl.data import BatchIterator  # noqa: E402
from jaxdl.models.attention import attend  # noqa: E402
from jaxdl.train import build_experiment  # noqa: E402

LAYERS, HEADS, D_MODEL, SEQ, BATCH = 4, 4, 256, 256, 16


def gpt_config(**model):
    config = base_config()
    config.mesh.data = 1
    config.data = {"name": "tinyshakespeare", "seq_len": SEQ}
    config.model = {"name": "gpt", "d_model": D_MODEL, "num_layers": LAYERS,
                    "num_heads": HEADS, **model}
    config.optimizer.weight_decay = 0.1
    config.optimizer.schedule = "constant"
    config.batch_size = config.eval_batch_size = BATCH
    return config


def matmul_peak(dtype, n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of an n x n matmul; bfloat16 operands accumulate in float32."""
    a = jax.random.normal(jax.random.key(0), (n, n)).astype(dtype)
    f = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def torch_gpt(params, vocab: int):
    """The same GPT in PyTorch eager, parameters copied from our float32 ``params``."""
    import torch
    import torch.nn.functional as F

    def t(x, transpose=False):
        x = np.array(x, np.float32)  # a writable copy
        return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(x.T if transpose else x)))

    class Block(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.ln1 = torch.nn.LayerNorm(D_MODEL, eps=1e-5)
            self.ln2 = torch.nn.LayerNorm(D_MODEL, eps=1e-5)
            self.qkv = torch.nn.Linear(D_MODEL, 3 * D_MODEL)
            self.proj = torch.nn.Linear(D_MODEL, D_MODEL)
            self.fc = torch.nn.Linear(D_MODEL, 4 * D_MODEL)
            self.fc_out = torch.nn.Linear(4 * D_MODEL, D_MODEL)
            for mod, src in ((self.ln1, p["norm1"]), (self.ln2, p["norm2"])):
                mod.weight, mod.bias = t(src["scale"]), t(src["bias"])
            attn = p["self_attention"]
            pairs = ((self.qkv, attn["qkv"]), (self.proj, attn["out"]),
                     (self.fc, p["mlp_in"]), (self.fc_out, p["mlp_out"]))
            for mod, src in pairs:
                mod.weight, mod.bias = t(src["kernel"], transpose=True), t(src["bias"])

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D_MODEL, dim=2)
            q, k, v = (z.view(b, n, HEADS, -1).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, n, D_MODEL))
            return x + self.fc_out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = torch.nn.Embedding(vocab, D_MODEL)
            self.tok.weight = t(params["embedding"]["tokens"]["embedding"])
            self.pos = t(params["embedding"]["learned"]["table"])
            self.blocks = torch.nn.ModuleList(Block(params["layers"]["blocks"][i])
                                              for i in range(LAYERS))
            self.ln_f = torch.nn.LayerNorm(D_MODEL, eps=1e-5)
            self.ln_f.weight = t(params["final_norm"]["scale"])
            self.ln_f.bias = t(params["final_norm"]["bias"])
            self.head = torch.nn.Linear(D_MODEL, vocab)
            self.head.weight = t(params["head"]["kernel"], transpose=True)
            self.head.bias = t(params["head"]["bias"])

        def forward(self, idx):
            x = self.tok(idx) + self.pos[: idx.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

    return GPT()


def torch_stepper(params, vocab, batch, learning_rate):
    import torch
    import torch.nn.functional as F

    model = torch_gpt(params, vocab)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.1,
                                fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.1)
    x = torch.from_numpy(np.asarray(batch["x"]).astype(np.int64))
    y = torch.from_numpy(np.asarray(batch["y"]).astype(np.int64))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).view(-1, vocab), y.view(-1))
        loss.backward()
        opt.step()
        return loss.item()

    return step


def attention_temp_bytes(implementation: str, seq: int = 8192) -> int:
    shape = jax.ShapeDtypeStruct((1, seq, HEADS, 64), jnp.float32)

    def loss(q, k, v):
        return attend(q, k, v, implementation=implementation, causal=True, block_size=512).sum()

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(shape, shape, shape).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def compile_seconds(num_layers: int) -> float:
    experiment = build_experiment(gpt_config(num_layers=num_layers, scan_layers=True))
    state = jax.eval_shape(experiment.init_state)
    batch = {k: jax.ShapeDtypeStruct(s, d) for k, (s, d) in
             {"x": ((BATCH, SEQ), jnp.int32), "y": ((BATCH, SEQ), jnp.int32)}.items()}
    start = time.perf_counter()
    experiment.train_step.lower(state, batch).compile()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    parser.add_argument("--compile-pairs", type=int, default=2)
    args = parser.parse_args()

    peak_f32, peak_bf16 = matmul_peak(jnp.float32), matmul_peak(jnp.bfloat16)
    variants = {"jax float32": gpt_config(), "jax bf16 matmuls": gpt_config(dtype="bfloat16")}
    runs, flops = {}, None
    for name, config in variants.items():
        experiment = build_experiment(config)
        batch = next(BatchIterator(experiment.dataset.train, BATCH, seed=0))
        placed = jax.device_put(batch, experiment.batch_sharding)
        state = experiment.init_state()
        compiled = experiment.train_step.lower(state, placed).compile()
        flops = flops or compiled.cost_analysis()["flops"]
        state, metrics = compiled(state, placed)
        first_loss = float(metrics["loss"])
        runs[name] = {"step": compiled, "state": state, "batch": placed, "times": []}
        if name == "jax float32":
            torch_step = torch_stepper(jax.device_get(experiment.init_state().params),
                                       experiment.dataset.num_classes, batch,
                                       config.optimizer.learning_rate)
            torch_loss = torch_step()
            print(f"first-step loss on the same batch and weights: jax {first_loss:.5f}, "
                  f"torch {torch_loss:.5f}")

    def time_jax(run):
        start = time.perf_counter()
        for _ in range(args.steps):
            run["state"], metrics = run["step"](run["state"], run["batch"])
        jax.block_until_ready(metrics)
        return (time.perf_counter() - start) / args.steps

    def time_torch():
        start = time.perf_counter()
        for _ in range(args.steps):
            torch_step()
        return (time.perf_counter() - start) / args.steps

    torch_times = []
    for _ in range(args.rounds):
        for run in runs.values():
            run["times"].append(time_jax(run))
        torch_times.append(time_torch())

    def ratio(times):
        return statistics.median(a / b for a, b in zip(times, torch_times))

    rows = [(name, run["times"]) for name, run in runs.items()] + [("torch eager float32",
                                                                   torch_times)]
    print(f"{'step':22s} {'ms/step':>9s} {'GFLOP/s':>8s} {'of peak':>11s} {'/ torch':>8s}")
    for name, times in rows:
        ms = statistics.median(times)
        gflops = flops / ms / 1e9
        peak = peak_bf16 if "bf16" in name else peak_f32
        print(f"{name:22s} {1e3 * ms:9.1f} {gflops:8.1f} {gflops / peak:11.2f} {ratio(times):8.2f}")
    print(f"matmul peak 2048^2: float32 {peak_f32:.1f} GFLOP/s, bf16->f32 {peak_bf16:.1f} GFLOP/s;"
          f" step FLOPs (XLA) {flops / 1e9:.1f} G")

    naive, blockwise = attention_temp_bytes("naive"), attention_temp_bytes("blockwise")
    print(f"attention grad temp memory at seq 8192: naive {naive / 2**20:.0f} MiB, blockwise "
          f"{blockwise / 2**20:.1f} MiB")
    pairs = [(compile_seconds(4), compile_seconds(24)) for _ in range(args.compile_pairs)]
    compile_ratio = statistics.median(b / a for a, b in pairs)
    print(f"compile, scanned layers: 4 -> {statistics.median(a for a, _ in pairs):.1f} s, "
          f"24 -> {statistics.median(b for _, b in pairs):.1f} s")
    f32, bf16 = (runs["jax float32"]["times"], runs["jax bf16 matmuls"]["times"])
    print(json.dumps({
        "gpt_f32_over_torch": round(ratio(f32), 3),
        "gpt_bf16_over_torch_f32": round(ratio(bf16), 3),
        "blockwise_temp_memory_ratio": round(blockwise / naive, 4),
        "scan_compile_24_over_4": round(compile_ratio, 3),
        "ms_per_step": {name: round(1e3 * statistics.median(t), 1) for name, t in rows},
        "gflops_per_step": round(flops / 1e9, 2),
        "matmul_peak_gflops": {"float32": round(peak_f32, 1), "bf16_f32acc": round(peak_bf16, 1)},
    }))


if __name__ == "__main__":
    main()
