"""Vanilla RNN vs LSTM on the recall task (output the first of 60 symbols): the gradient that
reaches each input position, against its lag, at initialization and after training.

Command:   python -m experiments.analyze --config rnn_gradient_vanishing
Output:    runs/rnn_gradient_vanishing/{gradient_vs_lag.png, results.json, train_*/}
Runtime:   106 s wall for both cells, compilation included (1,000 steps each; measured
           2026-11-30, jax 0.10, 2 CPU cores shared with three other jobs, load average ~8).
Result:    at initialization the gradient of the correct logit reaching the input 59 steps
           back is 0.0056x the one at lag 0 for the vanilla RNN (a straight, exponential decay
           on the log plot) and 0.056x for the LSTM (a slow, sub-exponential decay). After
           training both reach 100% held-out accuracy, and both send a large gradient to the
           first token (lag 59: 9.4x resp. 1.6x lag 0): with orthogonal recurrent weights
           (Saxe et al., 2014) and gradient clipping a vanilla RNN still learns a lag-59 recall
           here. (An earlier run at lr 1e-2 and 600 steps: neither cell learned it, and the
           trained vanilla RNN's gradient fell below 1e-18 at lag 45.)
"""

import ml_collections

from jaxdl.config import base_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "gradient_vs_lag"
    config.seed = 0
    config.cells = ("rnn", "lstm")
    config.num_examples = 256
    train = base_config()
    train.data = {"name": "recall", "length": 60, "num_symbols": 8, "num_train": 10_000,
                  "num_eval": 1_000}
    # model.cell is set by the analysis for each entry of config.cells.
    train.model = {"name": "rnn_classifier", "cell": "lstm", "hidden": 64, "embed_dim": 16}
    train.optimizer.learning_rate = 3e-3
    train.optimizer.clip_norm = 1.0
    train.batch_size = 64
    train.eval_batch_size = 500
    train.num_steps = 1000
    train.eval_every = 500
    train.checkpoint_every = 1000
    train.mesh.data = 1
    config.train = train
    return config
