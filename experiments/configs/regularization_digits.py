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

Measured 2026-11-30 (jax 0.10.2, 2 CPU cores shared with 3 other engineers' jobs, load
average ~12), all variants: ``python -m experiments.configs.regularization_digits`` (182 s
wall for the five; train accuracy = final model, evaluation mode, whole training split;
the early-stopping row reports the restored best state, stopped at step 1,300):

| variant | steps run | train acc | held-out acc | gap (points) | held-out loss | s |
| --- | --- | --- | --- | --- | --- | --- |
| none | 1500 | 100.00% | 98.47% | 1.53 | 0.054 | 38 |
| dropout 0.5 | 1500 | 100.00% | 98.75% | 1.25 | 0.046 | 34 |
| weight decay 0.05 | 1500 | 100.00% | 98.61% | 1.39 | 0.049 | 33 |
| L2 penalty 1e-3 | 1500 | 100.00% | 98.05% | 1.95 | 0.061 | 39 |
| early stopping (patience 3) | 1300 | 100.00% | 98.61% | 1.39 | 0.051 | 31 |

Every variant fits the 1,078 training digits perfectly; dropout gives the smallest gap and
held-out loss, decoupled weight decay and early stopping help a little, and this L2
strength slightly hurts (one seed; differences of ~0.3 points are 2 of 719 digits).
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


def main(workdir: str = "runs/regularization_digits") -> None:
    """Train every variant with the one loop; print train/held-out accuracy and the gap.

    ``python -m experiments.configs.regularization_digits`` (train accuracy: the final
    model in evaluation mode on the whole training split)."""
    import dataclasses
    import time

    from jaxdl.config import apply_overrides
    from jaxdl.train import evaluate, train_and_evaluate
    from jaxdl.train.experiment import REGISTRIES

    print("| variant | steps run | train acc | held-out acc | gap | held-out loss | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, overrides in VARIANTS.items():
        config = apply_overrides(get_config(), overrides, registries=REGISTRIES)
        config.progress_bar = False
        start = time.time()
        result = train_and_evaluate(config, f"{workdir}/{name.split()[0]}")
        on_train = dataclasses.replace(result.experiment.dataset,
                                       eval=result.experiment.dataset.train)
        train = evaluate(dataclasses.replace(result.experiment, dataset=on_train),
                         result.state)
        held = result.eval_metrics
        steps = (result.early_stopping or {}).get("stopped_step") or config.num_steps
        print(f"| {name} | {steps} | {100 * train['accuracy']:.2f}% | "
              f"{100 * held['accuracy']:.2f}% | "
              f"{100 * (train['accuracy'] - held['accuracy']):.2f} | {held['loss']:.3f} | "
              f"{time.time() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
