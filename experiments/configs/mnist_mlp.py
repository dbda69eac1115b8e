"""MLP 784-512-256-10 on MNIST (8,000 train / 2,000 held-out from the official test files).

Command:   JAXDL_DATA_DIR=../shared/data python -m experiments.train --config mnist_mlp
Runtime:   MEASURED_RUNTIME
Result:    MEASURED_RESULT
"""

from jaxdl.config import base_config


def get_config():
    config = base_config()
    config.data = {"name": "mnist", "source": "test_split", "train_size": 8000,
                   "eval_size": 2000}
    config.model = {"name": "mlp", "hidden": (512, 256), "activation": "relu"}
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 50
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_steps = 1000
    config.log_every = 50
    config.eval_every = 500
    config.checkpoint_every = 500
    return config
