"""Character-level GRU language model on Tiny Shakespeare (same budget as ``char_lstm``).

Command:   JAXDL_DATA_DIR=../shared/data python -m experiments.analyze --config char_gru
Output:    runs/char_gru/{samples.txt, results.json, train/}
Runtime:   233 s wall, compilation included (measured 2026-11-30, jax 0.10, 2 CPU cores
           shared with three other jobs, load average ~10; ``char_lstm``: 293 s).
Result:    held-out loss 1.741 nats/char (2.51 bits/char), accuracy 48.6%, with 267,393
           parameters (``char_lstm``, 349,569 parameters: 1.933 nats/char, 42.5%). A sample
           (temperature 0.8):
             ROMEO:
             O on a sacticaue thy mother, gooss dake
             He sode the queen and the cloom,
"""

from experiments.configs.char_lstm import analysis_config


def get_config():
    return analysis_config({"name": "rnn_lm", "cell": "gru", "hidden": 256, "embed_dim": 64})
