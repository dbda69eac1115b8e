"""Scaling law of MLPs on MNIST (8k/2k): held-out loss vs parameters and examples seen.

Command:   JAXDL_DATA_DIR=../shared/data python -m experiments.analyze --config scaling_law_mlp
Output:    runs/scaling_law_mlp/{scaling_law.png, results.json, width_*/}
Runtime:   477 s wall on 2 CPU cores heavily shared with other jobs (load ~10; 2026-11-30,
           jax 0.10.2, compilation cache off): 6 widths, each resumed to 5 budgets.
Result (seed 0, 30 points, N = 3,190 .. 101,770 parameters, D = 1,600 .. 25,600 examples):
           L(N, D) = 0.076 + 3.08e3 N^-1.00 + 641 D^-0.86, RMS log-residual 0.18. Held-out
           loss falls with both N and D everywhere (0.894 -> 0.252 at D = 25,600 from 4 to
           128 units); at these budgets bigger MLPs also learn faster per step, an N x D
           interaction the additive law cannot express (hence the residual).
"""

import ml_collections

from jaxdl.config import base_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "scaling_law"
    config.seed = 0
    config.widths = (4, 8, 16, 32, 64, 128)
    config.steps = (25, 50, 100, 200, 400)
    train = base_config()
    train.data = {"name": "mnist"}
    train.model = {"name": "mlp", "hidden": (32,)}
    train.optimizer.learning_rate = 1e-3
    train.optimizer.schedule = "constant"
    train.optimizer.warmup_steps = 0
    train.batch_size = 64
    train.mesh.data = 1
    train.eval_every = 0
    train.checkpoint_every = 0
    train.plots = False
    config.train = train
    return config
