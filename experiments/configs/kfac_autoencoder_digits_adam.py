"""Adam baseline for ``kfac_autoencoder_digits`` (same model, data, objective and steps).

Command:   python -m experiments.train --config kfac_autoencoder_digits_adam
Runtime:   138 s wall, compilation included (300 steps, batch 128, 1 device; measured
           2026-11-30 on the shared 2-core VM under heavy load, ~10).
Result:    held-out objective 22.00 nats per image (reconstruction 22.00) at step 300;
           K-FAC: 18.23.
"""

from experiments.configs import kfac_autoencoder_digits


def get_config():
    config = kfac_autoencoder_digits.get_config()
    config.optimizer = {"name": "adam", "learning_rate": 3e-3, "schedule": "constant"}
    return config
