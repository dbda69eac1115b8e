"""Weight-only int8 / int4 quantization of a briefly trained character GPT: held-out loss
and perplexity change and memory saved (issue 8).

Command:   python -m experiments.analyze --config quantization_char_gpt
Output:    runs/quantization_char_gpt/{results.json, train/}
Runtime:   about 8 min wall (training 200 steps: 6 min 14 s), measured 2026-11-30 with jax
           0.10.2 on the 2-core machine shared with six other sessions (load average ~15).
Result (seed 0, 620k parameters, held-out loss on 256 windows of 64 characters; every Dense
kernel quantized, embeddings/biases/norms float32):
           float32          loss 2.2567  perplexity 9.552   2,479,876 bytes
           int8 per channel loss 2.2566  perplexity 9.551     699,528 bytes (-71.8%)
           int4 groups 32   loss 2.2634  perplexity 9.615     461,140 bytes (-81.4%)
           int4 groups 128  loss 2.2691  perplexity 9.670     405,064 bytes (-83.7%)
           int8 changes the loss by -0.0001 nats (noise); int4 costs +0.007 (groups of 32)
           to +0.012 nats (groups of 128): smaller groups, tighter scales.
"""

import ml_collections

from experiments.configs.char_gpt import get_config as char_gpt_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "weight_quantization"
    config.seed = 0
    config.group_sizes = (32, 128)
    config.eval_windows = 256
    train = char_gpt_config()
    train.num_steps = 200
    train.eval_every = train.checkpoint_every = 200
    train.mesh.data = 1
    config.train = train
    return config
