"""LoRA over one frozen digits MLP: two named adapters for two shifted tasks.

The base MLP is trained on the digits; each adapter (Hu et al., 2021) then adapts the frozen
base to a new input distribution: ``rotated`` (images turned by 90 degrees) and ``inverted``
(``1 - x``). Reports held-out accuracy of the base and of each adapter on each task, the
trainable fraction, the weight error of merge/switch/unmerge and the accuracy after
switching merged weights from one adapter to the other.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import optax

from experiments.analyses import _loops
from experiments.analyses.registry import ANALYSES
from jaxdl import functional
from jaxdl.adapt import lora
from jaxdl.data import load_dataset

TASKS = {
    "rotated": lambda x: np.rot90(x, 1, axes=(1, 2)).copy(),
    "inverted": lambda x: 1.0 - x,
}


@ANALYSES.register("lora")
def run(*, workdir: pathlib.Path, seed: int, hidden: tuple = (128, 128), base_steps: int = 800,
        adapter_steps: int = 400, rank: int = 4, alpha: float = 8.0, dropout: float = 0.0,
        targets: str = ".*kernel", learning_rate: float = 3e-3) -> dict[str, Any]:
    lora.check_settings(rank=rank, alpha=alpha, dropout=dropout, targets=targets)
    ds = load_dataset("digits")
    graphdef, params, state, _ = _loops.train_mlp(ds.train, tuple(hidden), num_steps=base_steps,
                                                  seed=seed)
    tasks = {name: ({"x": f(ds.train["x"]), "y": ds.train["y"]},
                    {"x": f(ds.eval["x"]), "y": ds.eval["y"]}) for name, f in TASKS.items()}
    tasks = {"original": (ds.train, ds.eval), **tasks}
    forward = jax.jit(functional.apply, static_argnums=0)
    lora_forward = jax.jit(lora.lora_apply, static_argnums=0)

    def acc(p, data, adapter=None):
        logits = (forward(graphdef, p, state, data["x"])[0] if adapter is None else
                  lora_forward(graphdef, p, state, adapter, data["x"])[0])
        return float(np.mean(np.argmax(np.asarray(logits), -1) == data["y"]))

    bank, results = {}, {"base": {t: acc(params, ev) for t, (_, ev) in tasks.items()}}
    tx = lora.lora_optimizer(optax.adam(learning_rate))
    for i, name in enumerate(TASKS):
        adapter = lora.init_lora(params, jax.random.key(seed + 1 + i), targets=targets,
                                 rank=rank, alpha=alpha, dropout=dropout)

        def loss_fn(tree, batch, key):
            logits, _ = lora.lora_apply(graphdef, tree["base"], state, tree["adapter"],
                                        batch["x"], train=True, rng=key)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

        tree, _ = _loops.fit(loss_fn, {"base": params, "adapter": adapter}, tx, tasks[name][0],
                             batch_size=64, num_steps=adapter_steps, seed=seed)
        assert all(jax.tree.leaves(jax.tree.map(np.array_equal, tree["base"], params)))
        bank[name] = tree["adapter"]
        results[name] = {t: acc(params, ev, bank[name]) for t, (_, ev) in tasks.items()}

    merged = lora.merge(params, bank["rotated"])
    switched = lora.switch_adapter(merged, bank, "rotated", "inverted")
    restored = lora.unmerge(switched, bank["inverted"])
    summary = {
        "held_out_accuracy": results,
        "base_params": functional.count_params(params),
        "adapter_params": lora.num_adapter_params(bank["rotated"]),
        "trainable_fraction": lora.num_adapter_params(bank["rotated"])
        / functional.count_params(params),
        "max_abs_unmerge_minus_base_weight": max(
            float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(restored),
                                                          jax.tree.leaves(params))),
        "switched_inverted_accuracy": acc(switched, tasks["inverted"][1]),
    }
    return {"summary": summary, "figures": []}
