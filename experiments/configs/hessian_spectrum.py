"""Hessian spectrum of an MLP (64-64-10) on digits, at initialization and after training.

Command:   python -m experiments.analyze --config hessian_spectrum
Output:    runs/hessian_spectrum/{hessian_spectrum.png, results.json, train/}
Runtime:   127 s with JAXDL_COMPILATION_CACHE="" on 2 CPU cores shared with four other jobs
           (2026-11-30, jax 0.10.2), training (600 steps) included.
Result (seed 0, 4,810 parameters, loss on 512 training examples):
           initialization  loss 2.318, top-5 eigenvalues 1.43 1.38 1.22 1.09 0.97,
                           Hutchinson trace 12.6 +- 0.9
           trained         loss 0.078, top-5 eigenvalues 2.86 2.58 1.92 1.52 1.17,
                           trace 15.2 +- 0.7; held-out accuracy 95.3%
           Training sharpens the top of the spectrum (the largest eigenvalue doubles) while
           most of the density stays in a spike at 0 (see hessian_spectrum.png).
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
