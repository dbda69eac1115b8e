"""Random search vs successive halving for an MLP on digits (learning rate, width, decay).

Command:   python -m experiments.analyze --config hparam_search_digits
Output:    runs/hparam_search_digits/{hparam_search.png, results.json, random/, halving/}
Runtime:   778 s wall on 2 CPU cores heavily shared with other jobs (load ~10; 2026-11-30,
           jax 0.10.2, compilation cache off): 9 + 27 + 9 + 3 + 1 compiled trainings.
Result (seed 0, held-out accuracy):
           random search   9 x 300 = 2,700 steps, best 96.9% (lr 0.045, wd 1.1e-3, (256,))
           succ. halving   27 -> 9 -> 3 -> 1 at 12 / 36 / 108 / 324 steps = 972 steps,
                           winner 94.4% (lr 0.032, wd 2.3e-4, (256,)): the same region of
                           the space for 36% of the steps.
"""

import ml_collections

from jaxdl.config import base_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "hparam_search"
    config.seed = 0
    # (dotted config key, distribution, arguments...): see jaxdl.tune.search.
    config.space = (
        ("optimizer.learning_rate", "log_uniform", 1e-5, 1e-1),
        ("optimizer.weight_decay", "log_uniform", 1e-6, 1e-1),
        ("model.hidden", "choice", ((16,), (64,), (256,))),
    )
    config.num_random = 9
    config.random_budget = 300
    config.halving_candidates = 27
    config.min_budget = 12
    config.eta = 3
    config.metric = "accuracy"
    config.maximize = True
    train = base_config()
    train.model = {"name": "mlp", "hidden": (64,)}
    train.optimizer.schedule = "constant"  # promoted trials resume exactly
    train.optimizer.warmup_steps = 0
    train.mesh.data = 1
    train.eval_every = 0
    train.checkpoint_every = 0
    train.plots = False
    config.train = train
    return config
