"""Dropout vs weight decay vs early stopping on scikit-learn's digits: the train/held-out gap.

Base command (no regularization):
    python -m experiments.train --config regularization_digits
Model:     VGG-style CNN on 8x8 digits: conv 32 -> pool -> conv 64 -> pool -> dense 256 -> 10,
           no BatchNorm; AdamW without weight decay, lr 2e-3 constant, batch 32, 1,500 steps
           (~45 epochs of 1,078 training digits; eval_fraction 0.4 leaves 719 held out).
Variants (one override each):
    dropout 0.5 before the dense layers:  --config.model.dropout=0.5
    decoupled weight decay 0.05 (AdamW):  --config.optimizer.weight_decay=0.05
    L2 penalty 1e-3 in the loss:          --config.loss.l2=1e-3
    early stopping on held-out loss:      --config.early_stopping.patience=3

Measured 2026-12-01 on a quiet machine (jax 0.10.2, 2 CPU cores, Eigen convolutions, the
default since ``jaxdl.xla_cpu``): ``python -m experiments.configs.regularization_digits``,
seeds 0, 1, 2, 92 s wall for the 15 runs; mean over the seeds (min-max); train accuracy =
final model, evaluation mode, whole training split; the early-stopping row reports the
restored best state:

| variant | steps run | train acc % | held-out acc % | gap (points) | held-out loss |
| --- | --- | --- | --- | --- | --- |
| none | 1500 | 100.00 | 98.38 (98.19-98.61) | 1.62 (1.39-1.81) | 0.049 (0.041-0.056) |
| dropout 0.5 | 1500 | 100.00 | 98.01 (97.77-98.33) | 1.99 (1.67-2.23) | 0.067 (0.056-0.075) |
| weight decay 0.05 | 1500 | 100.00 | 98.38 (98.19-98.61) | 1.62 (1.39-1.81) | 0.043 (0.035-0.049) |
| L2 1e-3 | 1500 | 99.41 (98.24-100) | 97.22 (95.41-98.19) | 2.19 (1.81-2.83) | 0.075 (.044-.128) |
| early stopping | 900 | 100.00 | 98.47 (98.19-98.89) | 1.53 (1.11-1.81) | 0.046 (0.041-0.049) |

Re-run 05:36 UTC after :mod:`jaxdl.xla_cpu` kept YNNPACK's matmuls and reductions and
:mod:`jaxdl.host_memory`: every figure identical, 51 s wall for the 15 runs.

Every variant but L2 fits the 1,078 training digits perfectly. Early stopping gives the
smallest gap and the best held-out accuracy (stopping at step 900 for every seed);
decoupled weight decay leaves the accuracies unchanged but lowers the held-out loss;
dropout 0.5 before the dense layers costs ~0.4 points here, and this L2 strength hurts and
makes the constant-rate run unstable (one seed ends on a spike: held-out loss 0.128).
Differences of 0.3 points are 2 of 719 digits.

Why three seeds: the first version of this table (2026-11-30, seed 0 only, XLA's default
YNNPACK convolutions; reproduced bit for bit with ``xla_cpu_convolutions = "ynnpack"``) had
dropout with the smallest gap (1.25) and L2 at 98.05%; the same seed compiled with Eigen
convolutions, which only round differently, gave dropout 97.77% and L2 95.41%. With a
constant learning rate the held-out accuracy moves by up to 3 points between evaluations,
so a single final-step figure is mostly luck.
"""

from jaxdl.config import base_config


def get_config():
    config = base_config()
    config.data = {"name": "digits", "eval_fraction": 0.4}
    config.model = {"name": "vgg", "stages": ((32,), (64,)), "hidden": (256,),
                    "norm": "none", "dropout": 0.0}
    config.optimizer.learning_rate = 2e-3
    config.optimizer.weight_decay = 0.0
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_steps = 0
    config.batch_size = 32
    config.eval_batch_size = 200
    config.num_steps = 1500
    config.log_every = 50
    config.eval_every = 100
    config.checkpoint_every = 500
    return config


VARIANTS = {
    "none": {},
    "dropout 0.5": {"model.dropout": "0.5"},
    "weight decay 0.05": {"optimizer.weight_decay": "0.05"},
    "L2 penalty 1e-3": {"loss.l2": "1e-3"},
    "early stopping (patience 3)": {"early_stopping.patience": "3"},
}


def main(workdir: str = "runs/regularization_digits", seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """Train every variant with the one loop for each seed; print train/held-out accuracy
    and the gap as the mean over seeds with the range (min-max) beside it.

    ``python -m experiments.configs.regularization_digits`` (train accuracy: the final
    model in evaluation mode on the whole training split)."""
    import dataclasses
    import statistics
    import time

    from jaxdl.config import apply_overrides
    from jaxdl.train import evaluate, train_and_evaluate
    from jaxdl.train.experiment import REGISTRIES

    def cell(values, scale=100.0, digits=2):
        values = [scale * v for v in values]
        return (f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-"
                f"{max(values):.{digits}f})")

    print(f"seeds {list(seeds)}: mean (min-max)")
    print("| variant | steps run | train acc % | held-out acc % | gap (points) | held-out loss "
          "| s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, overrides in VARIANTS.items():
        rows, start = [], time.time()
        for seed in seeds:
            config = apply_overrides(get_config(), overrides, registries=REGISTRIES)
            config.progress_bar = False
            config.seed = seed
            result = train_and_evaluate(config, f"{workdir}/{name.split()[0]}/seed{seed}")
            on_train = dataclasses.replace(result.experiment.dataset,
                                           eval=result.experiment.dataset.train)
            train = evaluate(dataclasses.replace(result.experiment, dataset=on_train),
                             result.state)
            held = result.eval_metrics
            steps = (result.early_stopping or {}).get("stopped_step") or config.num_steps
            rows.append((steps, train["accuracy"], held["accuracy"],
                         train["accuracy"] - held["accuracy"], held["loss"]))
        steps, train_acc, held_acc, gap, loss = zip(*rows)
        print(f"| {name} | {'/'.join(map(str, steps))} | {cell(train_acc)} | "
              f"{cell(held_acc)} | {cell(gap)} | {cell(loss, 1.0, 3)} | "
              f"{time.time() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
