"""One training config under every sharding preset on the same devices, against one device.

Each preset in ``presets`` trains ``train`` from the same seed through the one loop with
``mesh.preset`` set (``mesh.data`` devices), after a reference run on one device. Recorded
per preset: the logged train losses, the held-out loss, the largest loss difference from
the one-device run, the mesh shape, and the per-device bytes of parameters + optimizer
state (the largest device) over the replicated bytes (ZeRO-3 goal: about 1/devices).

``pp`` here means the pipeline preset's *placement* (layers split over ``stage`` by the
rules, ``scan_layers`` forced on) executed by the ordinary jit step, i.e. GSPMD moves the
activations between stages with no microbatch schedule. ``pipeline_schedules`` (e.g.
``("gpipe", "1f1b")``) adds real pipelined runs (``jaxdl.parallel.pipeline``: shard_map +
ppermute over ``num_layers`` stages, ``pipeline_microbatches`` microbatches) on the same
batches, learning-rate schedule and optimizer. Runs with ``scan_layers`` are compared with
a one-device run that also scans (stacked parameters change which leaves get weight decay:
``decay_mask`` decays every leaf with ndim > 1, stacked biases included).
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import jax
import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl import functional, parallel
from jaxdl.data import BatchIterator
from jaxdl.parallel.sharded_init import per_device_bytes
from jaxdl.registry import ConfigError
from jaxdl.train import build_experiment, train_and_evaluate


def _train_losses(workdir: pathlib.Path) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r["loss"] for r in records if r.get("split") == "train"]


def _pipeline_losses(config, schedule: str, microbatches: int) -> list[float]:
    """Train losses logged every ``config.log_every`` steps of a pipelined run (the mean of
    the losses since the last log, as the loop logs them)."""
    from jaxdl.parallel.pipeline import make_pipeline_train_step
    from jaxdl.parallel.pipeline_gpt import gpt_pipeline_parts

    experiment = build_experiment(config)
    state = experiment.init_state()
    model = functional.merge_model(experiment.graphdef, state.params, state.model_state)
    parts, params = gpt_pipeline_parts(model)
    step = make_pipeline_train_step(parts, experiment.tx, mesh=experiment.mesh,
                                    schedule=schedule, num_microbatches=microbatches)
    opt_state = experiment.tx.init(params)
    batches = BatchIterator(experiment.dataset.train, config.batch_size, seed=config.seed)
    losses, window = [], []
    for i in range(1, config.num_steps + 1):
        batch = next(batches)
        params, opt_state, loss = step(params, opt_state, batch["x"], batch["y"])
        window.append(float(loss))
        if i % config.log_every == 0:
            losses.append(float(np.mean(window)))
            window = []
    return losses


@ANALYSES.register("sharding_presets")
def run(*, workdir: pathlib.Path, seed: int, train,
        presets=("dp", "fsdp", "tp", "fsdp+tp"), devices: int = 8,
        pipeline_schedules=(), pipeline_microbatches: int = 4) -> dict[str, Any]:
    """Train ``train`` on 1 device, then with each preset on ``devices`` devices."""
    for preset in presets:
        if preset not in parallel.PRESETS:
            raise ConfigError(f"config.presets: {preset!r} is not one of {list(parallel.PRESETS)}.")
    if not isinstance(devices, int) or not 1 <= devices <= jax.device_count():
        raise ConfigError(f"config.devices={devices!r}: expected an integer in "
                          f"[1, {jax.device_count()}] (devices available).")
    scanned = "pp" in presets or bool(pipeline_schedules)
    stages = int(train.model.num_layers)  # pp: one layer per stage
    runs = [("one_device", "dp", 1, False)]
    runs += [(p, p, stages if p == "pp" else devices, p == "pp") for p in presets]
    runs += [("one_device_scan", "dp", 1, True)] if scanned else []
    records = {}
    for name, preset, n, scan in runs:
        config = _variant(train, seed, preset, n, scan)
        run_dir = pathlib.Path(workdir) / name.replace("+", "_")
        result = train_and_evaluate(config, run_dir, resume=False)
        tree = (result.state.params, result.state.opt_state)
        replicated = sum(x.nbytes for x in jax.tree.leaves(tree))
        records[name] = {
            "preset": preset, "mesh": dict(result.experiment.mesh.shape), "scan_layers": scan,
            "train_losses": _train_losses(run_dir),
            "eval_loss": result.eval_metrics["loss"],
            "eval_accuracy": result.eval_metrics.get("accuracy"),
            "param_opt_bytes_per_device_over_replicated":
                max(per_device_bytes(tree).values()) / replicated,
        }
    for schedule in pipeline_schedules:
        config = _variant(train, seed, "pp", stages, True)
        records[f"pp_{schedule}"] = {
            "preset": "pp", "schedule": schedule, "stages": stages, "scan_layers": True,
            "microbatches": pipeline_microbatches,
            "train_losses": _pipeline_losses(config, schedule, pipeline_microbatches)}
    for record in records.values():
        reference = records["one_device_scan" if record["scan_layers"] else "one_device"]
        record["max_abs_train_loss_diff_vs_one_device"] = max(
            abs(a - b) for a, b in zip(record["train_losses"], reference["train_losses"],
                                       strict=True))
    keys = ("eval_loss", "max_abs_train_loss_diff_vs_one_device",
            "param_opt_bytes_per_device_over_replicated")
    summary = {name: {k: r[k] for k in keys if k in r} | {"final_train_loss":
                                                         r["train_losses"][-1]}
               for name, r in records.items()}
    return {"summary": summary, "figures": [], "records": records}


def _variant(train, seed: int, preset: str, devices: int, scan: bool):
    config = copy.deepcopy(train)
    with config.unlocked():
        config.seed, config.progress_bar, config.plots = seed, False, False
        config.mesh.preset, config.mesh.data = preset, devices
        config.model.scan_layers = scan
    return config
