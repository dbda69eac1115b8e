"""Vision Transformer on MNIST (8,000 train / 2,000 held-out from the official test files).

Command:   JAXDL_DATA_DIR=../shared/data python -m experiments.train --config vit_mnist
Model:     ViT, 7x7 patches (16 tokens + class token), d_model 64, 4 pre-norm layers of 4 heads,
           MLP ratio 2, layers scanned; AdamW 2e-3 (weight decay 0.05), warmup 50 + cosine,
           batch 128, 500 steps.
Runtime:   3 min 37 s wall, compilation included (measured 2026-11-30, jax 0.10.2, 2 CPU
           cores shared with other jobs, load average ~13; 1 min 7 s user CPU time).
Result:    93.60% held-out accuracy, held-out loss 0.236 at step 500 (88.85% at step 250;
           train accuracy ~97%: with 8k images the ViT overfits where the CNN of mnist_cnn
           reaches 98.25%; seed 0).
"""

from jaxdl.config import base_config


def get_config():
    config = base_config()
    config.data = {"name": "mnist", "source": "test_split", "train_size": 8000,
                   "eval_size": 2000}
    config.model = {"name": "vit", "patch_size": 7, "d_model": 64, "num_layers": 4,
                    "num_heads": 4, "mlp_ratio": 2, "scan_layers": True}
    config.optimizer.learning_rate = 2e-3
    config.optimizer.weight_decay = 0.05
    config.optimizer.warmup_steps = 50
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_steps = 500
    config.log_every = 50
    config.eval_every = 250
    config.checkpoint_every = 250
    return config
