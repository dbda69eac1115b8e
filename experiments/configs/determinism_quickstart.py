"""Determinism check of the quickstart (CNN on digits): two runs, same bits?

Command:   python -m experiments.analyze --config determinism_quickstart
Output:    runs/determinism_quickstart/{results.json, run_a/, run_b/}
Runtime:   85 s wall on 2 CPU cores heavily shared with other jobs (load ~10; 2026-11-30,
           jax 0.10.2, compilation cache off): two 200-step runs.
Result:    identical: every logged metric equal and the final parameters' sha256 equal
           (422b3c2bc3ae034f...), one CPU device.
"""

import ml_collections

from jaxdl.config import base_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "determinism"
    config.seed = 0
    train = base_config()
    train.num_steps = 200
    train.plots = False
    config.train = train
    return config
