"""Character-level LSTM trained by truncated BPTT with the state carried across batches.

Tiny Shakespeare cut into 32 contiguous streams (``tinyshakespeare_streams``); each step reads
the next 64 characters of every stream starting from the LSTM state the previous step ended
with (kept in the model state, so it is checkpointed and resumed), and backpropagates through
those 64 steps only. Same model, optimizer and characters per step as ``char_lstm``; the
held-out rows (3 x 31,370 characters) are read whole from a zero state.

Command:   JAXDL_DATA_DIR=../shared/data python -m experiments.train --config char_lstm_tbptt
Runtime:   292 s wall, compilation included (600 steps; measured 2026-11-30, jax 0.10,
           2 CPU cores shared with three other jobs, load average ~8-10).
Result:    held-out loss 1.837 nats/char (2.65 bits/char), accuracy 45.4%, reading each
           31,370-character held-out row in one pass (``char_lstm``, same model and budget
           without carried state, evaluated on independent 64-character windows: 1.933,
           42.5%). At step 300 the long-row evaluation was still poor (3.64 nats/char, train
           loss ~2.0): the state had not yet learned to stay stable over 31k steps.
"""

from experiments.configs.char_lstm import lm_train_config


def get_config():
    config = lm_train_config({"name": "rnn_lm", "cell": "lstm", "hidden": 256,
                              "embed_dim": 64, "stream_rows": 32})
    config.data = {"name": "tinyshakespeare_streams", "stream_rows": 32}
    config.loss = {"name": "tbptt_language_model", "window": 64}
    config.eval_batch_size = 4
    return config
