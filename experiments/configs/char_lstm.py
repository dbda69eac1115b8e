"""Character-level LSTM language model on Tiny Shakespeare, with text samples.

Command:   JAXDL_DATA_DIR=../shared/data python -m experiments.analyze --config char_lstm
Output:    runs/char_lstm/{samples.txt, results.json, train/} (samples also in the log)
Runtime:   293 s wall, compilation included (600 steps of 32 x 64 characters; measured
           2026-11-30, jax 0.10, 2 CPU cores shared with three other jobs, load average ~10).
Result:    held-out loss 1.933 nats/char (2.79 bits/char), next-character accuracy 42.5%;
           349,569 parameters (LSTM 256, embedding 64). A sample (temperature 0.8):
             ROMEO:
             He Pforth perently bloosed ardives restrte'st wing so mentity ame theme your sind,
             And mare, My your pare and to thus hangle and brow wis it.
"""

import ml_collections

from jaxdl.config import base_config


def lm_train_config(model: dict) -> ml_collections.ConfigDict:
    """The shared language-model budget: 600 steps of 32 windows of 64 characters."""
    train = base_config()
    train.data = {"name": "tinyshakespeare", "seq_len": 64}
    train.model = model
    train.optimizer.learning_rate = 5e-3
    train.optimizer.clip_norm = 1.0  # the usual recurrent-net preset (Pascanu et al., 2013)
    train.optimizer.warmup_steps = 50
    train.batch_size = 32
    train.eval_batch_size = 512
    train.num_steps = 600
    train.eval_every = 300
    train.checkpoint_every = 600
    train.mesh.data = 1
    return train


def analysis_config(model: dict) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "language_model_samples"
    config.seed = 0
    config.prompt = "ROMEO:"
    config.num_samples = 2
    config.sample_length = 200
    config.temperature = 0.8
    config.train = lm_train_config(model)
    return config


def get_config():
    return analysis_config({"name": "rnn_lm", "cell": "lstm", "hidden": 256, "embed_dim": 64})
