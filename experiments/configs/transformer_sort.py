"""Transformer encoder-decoder learning to sort 8 digits (teacher forcing, greedy decoding).

Command:   python -m experiments.train --config transformer_sort
Data:      sequence_task "sort": 20,000 random sequences of 8 symbols from 1..10 (train),
           1,000 held out; the decoder starts from BOS (token 0).
Model:     2 + 2 pre-norm layers, d_model 64, 4 heads, sinusoidal positions; AdamW 3e-3,
           warmup 50 + cosine, batch 64, 800 steps.
Runtime:   2 min 24 s wall, compilation included (measured 2026-11-30, jax 0.10.2, 2 CPU
           cores shared with other jobs, load average ~12; 52 s user CPU time).
Result:    held-out per-token accuracy 99.95%, whole-sequence (greedy decoding) accuracy
           99.8%, loss 0.0062 at step 800 (98.2% sequences at step 400; seed 0). Measured
           with greedy decoding by recompute, before the model's start_decoding existed.
"""

from jaxdl.config import base_config


def get_config():
    config = base_config()
    config.data = {"name": "sequence_task", "task": "sort", "length": 8, "num_symbols": 10,
                   "num_train": 20000, "num_eval": 1000}
    config.model = {"name": "transformer_seq2seq", "d_model": 64, "num_layers": 2,
                    "num_heads": 4, "positional": "sinusoidal"}
    config.loss = {"name": "seq2seq"}
    config.optimizer.learning_rate = 3e-3
    config.optimizer.warmup_steps = 50
    config.batch_size = 64
    config.eval_batch_size = 500
    config.num_steps = 800
    config.log_every = 50
    config.eval_every = 400
    config.checkpoint_every = 400
    return config
