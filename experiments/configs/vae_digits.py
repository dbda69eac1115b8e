"""VAE (8-dimensional latent, 256-unit MLPs) on the 8x8 digits.

Command:   python -m experiments.analyze --config vae_digits
Output:    runs/vae_digits/{vae_samples.png, vae_reconstructions.png, results.json}
Runtime:   56 s on 2 CPU cores shared with six other sessions (loaded), 2026-11-30, jax 0.10.2.
Result:    (seed 0) held-out ELBO -48.8 -> -24.2 nats per image (reconstruction -20.6,
           KL 3.6); samples from the prior are recognisable digits (vae_samples.png).
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "vae"
    config.seed = 0
    config.latent = 8
    config.hidden = (256,)
    config.num_steps = 3000
    config.batch_size = 128
    config.learning_rate = 1e-3
    config.eval_samples = 10
    return config
