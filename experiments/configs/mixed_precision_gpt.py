"""Mixed precision on a char GPT (2 layers, d_model 64): f32 vs bf16 vs f16 + loss scaling.

Command:   python -m experiments.analyze --config mixed_precision_gpt
Output:    runs/mixed_precision_gpt/{mixed_precision.png, results.json}
Runtime:   181 s wall (49 s CPU) on 2 CPU cores heavily shared with other jobs (load ~15;
           2026-11-30, jax 0.10.2): 3 policies x 300 steps, batch 16 x 64 characters.
Result (seed 0; identical batches; train loss = mean of the last 20 steps; eval = 512
           held-out windows, float32 master weights):
           policy  train   eval    max gap to f32 (20-step mean)  skipped  final scale
           f32     2.3532  2.3598  0                              -        -
           bf16    2.3526  2.3591  0.0024                         -        -
           f16     2.3596  2.3726  0.0102                         3        2^17
           The three curves overlap (mixed_precision.png). f16 grew its scale from 2^15 every
           50 good steps and backed off on 3 overflowing steps, each skipped (no update).
           Step times on this loaded CPU (median, not interleaved: see
           jaxdl.parallel.remat.step_time_bf16_vs_f32 for the fair comparison) are noise-level.
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "mixed_precision"
    config.seed = 0
    config.policies = ("f32", "bf16", "f16")
    config.num_steps = 300
    config.batch_size = 16
    config.seq_len = 64
    config.learning_rate = 3e-3
    config.model = {"d_model": 64, "num_layers": 2, "num_heads": 4}
    config.init_scale = 2.0**15
    config.growth_interval = 50
    config.smooth = 20
    config.eval_batches = 8
    return config
