"""K-FAC on the digits autoencoder 64-32-16-4-16-32-64 (tanh; Martens & Grosse, 2015).

Sigmoid cross-entropy summed over the 64 pixels + L2 1e-5, batch 128, 300 steps. K-FAC with
its adaptive step size and momentum (exact-Fisher quadratic model) and Levenberg-Marquardt
damping. The Adam baseline is ``kfac_autoencoder_digits_adam``.

Command:   python -m experiments.train --config kfac_autoencoder_digits
Runtime:   213 s wall, compilation included (300 steps, batch 128, 1 device; measured
           2026-11-30, jax 0.10.2, on the shared 2-core VM under heavy load, ~10).
Result:    held-out objective 18.23 nats per image (reconstruction 18.22) at step 300;
           Adam (``kfac_autoencoder_digits_adam``) reaches 22.00 in the same steps.
"""

from jaxdl.config import base_config


def get_config():
    config = base_config()
    config.data = {"name": "digits"}
    config.model = {"name": "autoencoder", "encoder": (32, 16, 4)}
    config.loss = {"name": "sigmoid_reconstruction", "l2": 1e-5}
    config.optimizer = {"name": "kfac", "learning_rate": 1.0, "schedule": "constant",
                        "adaptive": True, "adapt_damping": True, "damping": 1.0,
                        "damping_every": 5, "damping_decay": 0.95**5, "inverse_every": 10,
                        "l2_damping": 1e-5}
    config.batch_size = 128
    config.num_steps = 300
    config.eval_every = 100
    config.checkpoint_every = 300
    return config
