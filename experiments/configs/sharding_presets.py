"""Tiny character GPT on Tiny Shakespeare under every sharding preset (8 simulated devices).

Command:   XLA_FLAGS=--xla_force_host_platform_device_count=8 JAXDL_DATA_DIR=../shared/data \
           python -m experiments.analyze --config sharding_presets
Output:    runs/sharding_presets/{results.json, one_device/, dp/, fsdp/, tp/, fsdp_tp/}
Model:     char_gpt shrunk: GPT, 2 layers, d_model 64, 4 heads, context 32; AdamW 3e-3,
           batch 32, 40 steps; eval on 2% held-out text. Add "pp" to ``presets`` for the
           pipeline preset's placement (see experiments/analyses/sharding_presets.py).
           Pipelined runs: add --config.presets="('pp',)"
           --config.pipeline_schedules="('gpipe','1f1b')" (2 stages, 4 microbatches).
Runtime:   6 min 28 s wall for the 5 default runs (108 s of user CPU: the 2-core machine
           was heavily shared, load ~14); the pp command 4 min 29 s (76 s CPU). Measured
           2026-11-30, jax 0.10.2, seed 0.
Result:    train loss 4.348 -> 2.851 (log every 5 steps), held-out loss 2.8435 for the one
           device run AND every preset on 8 devices: dp, fsdp, tp (1x8), fsdp+tp (4x2);
           largest train-loss difference from one device 7.2e-7 (float32 summation order).
           Parameters + AdamW state on the fullest device / replicated: dp 1.00,
           fsdp 0.126 (goal 1/8 = 0.125), tp 0.215 (the 65-character vocabulary and the
           d_model vectors do not split 8 ways), fsdp+tp 0.141.
           pp (layers over 2 stages, scan_layers): equal bit for bit to a one-device
           scanned run (held-out 2.8435); GPipe and 1F1B (jaxdl.parallel.pipeline) within
           7.6e-7 of it at every logged step.
"""

import ml_collections

from experiments.configs.char_gpt import get_config as char_gpt


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "sharding_presets"
    config.seed = 0
    config.presets = ("dp", "fsdp", "tp", "fsdp+tp")
    config.devices = 8
    # Real pipelined runs (jaxdl.parallel.pipeline), one layer per stage: ("gpipe", "1f1b").
    config.pipeline_schedules = ()
    config.pipeline_microbatches = 4
    train = char_gpt()
    train.data = {"name": "tinyshakespeare", "seq_len": 32, "eval_fraction": 0.02}
    train.model = {"name": "gpt", "d_model": 64, "num_layers": 2, "num_heads": 4,
                   "positional": "learned"}
    train.optimizer.warmup_steps = 5
    train.num_steps = 40
    train.log_every = 5
    train.eval_every = 0
    train.checkpoint_every = 0
    config.train = train
    return config
