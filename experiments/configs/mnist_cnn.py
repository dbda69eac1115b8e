"""Small CNN on MNIST (8,000 train / 2,000 held-out from the official test files).

Command:   JAXDL_DATA_DIR=../shared/data python -m experiments.train --config mnist_cnn
Model:     conv 32 -> pool -> conv 64 -> pool -> dense 128 -> 10; AdamW 2e-3, warmup+cosine.
Runtime:   36 s wall, compilation included (500 steps, batch 128; measured 2026-12-01,
           jax 0.10.2, 2 CPU cores, quiet machine, compilation cache off; 118.5 s on
           2026-11-22 with YNNPACK convolutions on a shared machine). Re-run 2026-12-01
           05:34 UTC after jaxdl.xla_cpu kept YNNPACK's matmuls and reductions and
           jaxdl.host_memory (cold compilation cache): 28 s, identical metrics.
Result:    98.20% held-out accuracy, held-out loss 0.066 (seed 0; 98.25% on 2026-11-22).
"""

from jaxdl.config import base_config


def get_config():
    config = base_config()
    config.data = {"name": "mnist", "source": "test_split", "train_size": 8000,
                   "eval_size": 2000}
    config.model = {"name": "cnn", "features": (32, 64), "hidden": 128, "kernel_size": 3}
    config.optimizer.learning_rate = 2e-3
    config.optimizer.warmup_steps = 50
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_steps = 500
    config.log_every = 50
    config.eval_every = 250
    config.checkpoint_every = 250
    return config
