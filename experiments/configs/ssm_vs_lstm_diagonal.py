"""Diagonal (S4D-style) SSM language model on Tiny Shakespeare, on the same budget as
``char_lstm`` (600 steps, 32 x 64 characters, same optimizer); compare with it.

Command:   JAXDL_DATA_DIR=../shared/data \\
           python -m experiments.analyze --config ssm_vs_lstm_diagonal
Output:    runs/ssm_vs_lstm_diagonal/{samples.txt, results.json, train/}
Runtime:   590 s wall, compilation included (measured 2026-11-30, jax 0.10, 2 CPU cores
           shared with three other jobs, load average ~10; ``char_lstm``: 293 s, the selective
           SSM: 868 s in the same conditions).
Result:    held-out loss 1.671 nats/char (2.41 bits/char), accuracy 50.6%, with 223,425
           parameters; ``char_lstm`` (349,569 parameters, same budget): 1.933 nats/char, 42.5%;
           ``ssm_vs_lstm_selective`` (354,497): 1.662 nats/char, 51.0%.
"""

from experiments.configs.char_lstm import analysis_config


def get_config():
    return analysis_config({"name": "ssm_lm", "kind": "diagonal", "d_model": 128,
                            "num_layers": 2, "state_dim": 4, "expand": 2})
