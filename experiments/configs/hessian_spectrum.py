"""Hessian spectrum of an MLP (64-64-10) on digits, at initialization and after training.

Command:   python -m experiments.analyze --config hessian_spectrum
Output:    runs/hessian_spectrum/{hessian_spectrum.png, results.json, train/}
Runtime:   MEASURED_RUNTIME
Result:    MEASURED_RESULT
"""

import ml_collections

from jaxdl.config import base_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "hessian_spectrum"
    config.seed = 0
    config.num_examples = 512  # the fixed batch whose loss Hessian is analysed
    config.top_k = 5
    config.lanczos_iters = 40
    config.density_probes = 4
    config.density_iters = 40
    config.trace_probes = 64
    config.grid_points = 400
    train = base_config()
    train.model = {"name": "mlp", "hidden": (64,)}
    train.optimizer.learning_rate = 3e-3
    train.num_steps = 600
    train.mesh.data = 1
    config.train = train
    return config
