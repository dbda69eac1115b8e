"""Signal propagation at initialization: a 50-layer MLP, tanh and ReLU, three initializations.

Per layer, the variance of the forward activations and of the backward gradients for
``small_normal`` (std 0.01), ``glorot_normal`` (Glorot & Bengio, 2010) and ``he_normal``
(He et al., 2015): which schemes vanish, explode or stay stable with depth.

Command:   python -m experiments.analyze --config init_signal_propagation
Output:    runs/init_signal_propagation/{signal_propagation.png, results.json}
Runtime:   MEASURED_RUNTIME
Result:    MEASURED_RESULT
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "signal_propagation"
    config.seed = 0
    config.depth = 50
    config.width = 256
    config.batch = 512
    config.activations = ("tanh", "relu")
    config.inits = ("small_normal", "glorot_normal", "he_normal")
    return config
