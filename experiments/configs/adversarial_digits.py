"""FGSM/PGD robust accuracy on digits, before and after adversarial training.

Commands:
    standard training:     python -m experiments.train --config adversarial_digits
    adversarial training:  python -m experiments.train --config adversarial_digits \\
        --config.loss.adversarial="{'attack': 'pgd', 'epsilon': 0.1, 'steps': 5, 'fraction': 0.5}"
Model:     the quickstart CNN (conv 32 -> pool -> conv 64 -> pool -> dense 128); AdamW 3e-3,
           warmup + cosine, batch 64, 800 steps. Held-out metrics include the accuracy under
           FGSM and PGD (10 steps, step 0.025) at L-infinity epsilon 0.1 (inputs in [0, 1]).

Measured 2026-11-30 (jax 0.10.2, 2 CPU cores shared with 3 other engineers' jobs, load
average ~12): ``python -m experiments.configs.adversarial_digits`` runs both (111 s wall;
held-out split: 359 digits, seed 0):

| training | clean acc | FGSM acc | PGD-10 acc | s |
| --- | --- | --- | --- | --- |
| standard training | 98.05% | 69.64% | 64.62% | 27 |
| adversarial training (PGD-5, half of each batch) | 98.61% | 89.42% | 85.79% | 78 |

Re-measured 2026-12-01 on a quiet machine with Eigen convolutions (the default since
``jaxdl.xla_cpu``): 30.6 s wall (10 s + 18 s), every figure the same except FGSM accuracy
after adversarial training, 89.14%. Re-run 05:36 UTC after :mod:`jaxdl.xla_cpu` kept
YNNPACK's matmuls and reductions and :mod:`jaxdl.host_memory`: the same figures (FGSM after
adversarial training 89.14%), 13.8 s wall (7 s + 4 s).

Adversarial training raises accuracy under attack by ~20 points at no cost in clean
accuracy here; PGD is the stronger attack in both rows. Training costs ~3x per step (five
extra forward/backward passes on half the batch).
"""

from jaxdl.config import base_config


def get_config():
    config = base_config()
    config.loss = {"name": "classification", "label_smoothing": 0.0,
                   "robust_eval": {
                       "fgsm": {"attack": "fgsm", "epsilon": 0.1},
                       "pgd": {"attack": "pgd", "epsilon": 0.1, "steps": 10,
                               "step_size": 0.025}}}
    config.num_steps = 800
    config.eval_every = 200
    config.checkpoint_every = 400
    return config


VARIANTS = {
    "standard training": {},
    "adversarial training (PGD-5, half of each batch)": {
        "loss.adversarial": "{'attack': 'pgd', 'epsilon': 0.1, 'steps': 5, 'fraction': 0.5}"},
}


def main(workdir: str = "runs/adversarial_digits") -> None:
    """``python -m experiments.configs.adversarial_digits``: both variants, one table."""
    import time

    from jaxdl.config import apply_overrides
    from jaxdl.train import train_and_evaluate
    from jaxdl.train.experiment import REGISTRIES

    print("| training | clean acc | FGSM acc | PGD-10 acc | s |")
    print("| --- | --- | --- | --- | --- |")
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        config = apply_overrides(get_config(), overrides, registries=REGISTRIES)
        config.progress_bar = False
        start = time.time()
        m = train_and_evaluate(config, f"{workdir}/{i}").eval_metrics
        print(f"| {name} | {100 * m['accuracy']:.2f}% | "
              f"{100 * m['robust_accuracy_fgsm']:.2f}% | {100 * m['robust_accuracy_pgd']:.2f}% | "
              f"{time.time() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
