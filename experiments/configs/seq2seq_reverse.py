"""Reverse a sequence of 8 digits with a GRU encoder-decoder and Bahdanau attention.

Command:   python -m experiments.analyze --config seq2seq_reverse
Output:    runs/seq2seq_reverse/{attention.png, results.json, train/}
Runtime:   113 s wall, compilation included (600 steps, batch 128; measured 2026-11-30,
           jax 0.10, 2 CPU cores shared with three other jobs, load average ~8).
Result:    held-out (1,000 sequences) sequence accuracy 100.0% greedy and 100.0% with beam
           width 4, token accuracy 100.0%, loss 8.5e-5 nats/token; 103,595 parameters. The
           attention maps are clean anti-diagonals (target step t attends source L - 1 - t).
Luong attention: add ``--config.train.model.attention=luong --workdir
runs/seq2seq_reverse_luong``: 87 s wall (same conditions), sequence accuracy 99.9% greedy and
with beam width 4, token accuracy 99.99%, loss 0.0024 nats/token; 97,963 parameters.
"""

import ml_collections

from jaxdl.config import base_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "seq2seq_attention"
    config.seed = 0
    config.num_maps = 3
    config.beam_width = 4
    train = base_config()
    train.data = {"name": "sequence_task", "task": "reverse", "length": 8, "num_symbols": 10,
                  "num_train": 20_000, "num_eval": 1_000}
    train.model = {"name": "rnn_seq2seq", "cell": "gru", "attention": "bahdanau",
                   "hidden": 64, "embed_dim": 32, "attention_dim": 64, "bidirectional": True}
    train.loss = {"name": "seq2seq"}
    train.optimizer.learning_rate = 1e-2
    train.optimizer.clip_norm = 1.0
    train.optimizer.warmup_steps = 50
    train.batch_size = 128
    train.eval_batch_size = 500
    train.num_steps = 600
    train.eval_every = 200
    train.checkpoint_every = 600
    train.mesh.data = 1
    config.train = train
    return config
