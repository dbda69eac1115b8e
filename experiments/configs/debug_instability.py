"""Instability monitors on a digits MLP, with a NaN batch and a loss spike injected.

Step 150 gets a NaN batch: the step is skipped (``optax.apply_if_finite``) and the first
non-finite place is named in ``events.jsonl``. Step 250 gets inputs scaled x1000: the loss
spikes, the run rolls back to the step-240 checkpoint and halves the learning rate. Per-layer
gradient/update/activation statistics are recorded every 20 steps (``dynamics.png``,
``diagnosis.txt``, TensorBoard).

Command:   python -m experiments.train --config debug_instability
Output:    runs/debug_instability/{events.jsonl, dynamics.png, diagnosis.txt, curves.png, ...}
Runtime:   56 s wall on 2 CPU cores heavily shared with other jobs (load ~10; 2026-11-30,
           jax 0.10.2, compilation cache off).
Result (seed 0): events.jsonl holds exactly two events: step 150 skipped (NaN loss, first
           non-finite value: "input") and step 250 rolled back to step 240 (loss 5.57 against
           a median of ~0.05) with the learning rate x0.5; 95.54% held-out accuracy at step
           400; diagnosis "gradient flow OK" (first/last layer gradient ratio 0.82).
"""

from jaxdl.config import base_config


def get_config():
    config = base_config()
    config.model = {"name": "mlp", "hidden": (128, 64)}
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_steps = 0
    config.num_steps = 400
    config.log_every = 10
    config.eval_every = 100
    config.checkpoint_every = 40
    config.monitor.skip_nonfinite = True
    config.monitor.spike_threshold = 4.0
    config.monitor.spike_window = 30
    config.monitor.dynamics_every = 20
    config.monitor.inject_nan_steps = (150,)
    config.monitor.inject_spike_steps = (250,)
    return config
