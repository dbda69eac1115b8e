"""The one training loop every experiment uses.

``train_and_evaluate(config, workdir)``: builds the experiment, resumes from the newest
checkpoint in ``workdir`` if there is one, trains with a progress bar, evaluates
periodically, writes metrics (JSONL + TensorBoard), checkpoints (orbax, async, atomic) and
a PNG of the curves. Killed at any point and started again, it finishes with parameters
bit-identical to an uninterrupted run: the state, the data position and the per-step PRNG
keys all come back from the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from jaxdl.checkpoint import Checkpointer
from jaxdl.data import BatchIterator, eval_batches
from jaxdl.monitor import MetricWriter, plot_curves
from jaxdl.monitor.instability import backoff_factor
from jaxdl.monitor.reproducibility import run_record
from jaxdl.monitor.training import Monitors
from jaxdl.regularize.early_stopping import EarlyStopping, check_early_stopping
from jaxdl.train.experiment import Experiment, build_experiment
from jaxdl.train.state import TrainState

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns.

    Attributes:
      state: the final TrainState.
      eval_metrics: held-out metrics at the last step (e.g. ``accuracy``, ``loss``).
      workdir: where metrics, plots and checkpoints were written.
      experiment: the built pieces (data set, graphdef, compiled steps).
      resumed_from: the checkpoint step this run started from, or None.
      early_stopping: best step/value and the step it stopped at, when
        ``config.early_stopping.patience > 0`` (then ``state`` is the best state if
        ``restore_best``), else None.
      history: every logged train-metrics record of this call, ``{"step", "loss", ...,
        "learning_rate", "wall_time"}`` (``wall_time``: seconds since this call's training
        loop started, compilation, evaluation and checkpointing included).
    """

    state: TrainState
    eval_metrics: dict[str, float]
    workdir: pathlib.Path
    experiment: Experiment
    resumed_from: int | None
    early_stopping: dict[str, Any] | None = None
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


def evaluate(experiment: Experiment, state: TrainState) -> dict[str, float]:
    """Average the objective's eval sums over every held-out example exactly once."""
    totals: dict[str, Any] = {}
    for batch in eval_batches(experiment.dataset.eval, experiment.config.eval_batch_size):
        sums = experiment.eval_step(state, jax.device_put(batch, experiment.batch_sharding))
        totals = sums if not totals else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    count = float(totals.pop("count"))
    return {name: float(value) / count for name, value in totals.items()}


def _mean_metrics(window: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of each metric over the window's finite values; ``nonfinite_steps`` counts the
    steps whose loss was NaN/inf (skipped when ``monitor.skip_nonfinite`` is on)."""
    host = jax.device_get(window)
    means = {}
    for key in host[0]:
        values = np.asarray([m[key] for m in host], np.float64)
        finite = values[np.isfinite(values)]
        means[key] = float(finite.mean()) if finite.size else float("nan")
    bad = sum(not np.isfinite(float(m["loss"])) for m in host)
    if bad:
        means["nonfinite_steps"] = float(bad)
    return means


def _write_run_info(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """config.json: the config, seed, package versions, git commit and devices."""
    info = run_record(config)
    (workdir / "config.json").write_text(json.dumps(info, indent=2, default=str))


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    resume: bool = True,
) -> TrainResult:
    """Train ``config`` in ``workdir`` and return the final state and held-out metrics.

    Args:
      config: a config from :func:`jaxdl.config.base_config` or an experiment file.
      workdir: run directory; it receives ``metrics.jsonl``, ``tensorboard/``,
        ``curves.png``, ``config.json`` and ``checkpoints/``.
      resume: continue from the newest checkpoint in ``workdir`` when there is one
        (otherwise an existing checkpoint directory is an error, so nothing is overwritten).
    """
    workdir = pathlib.Path(workdir)
    stop_options = check_early_stopping(config.get("early_stopping"))
    experiment = build_experiment(config)  # validates the config before anything compiles
    workdir.mkdir(parents=True, exist_ok=True)
    _write_run_info(workdir, config)
    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=config.keep_checkpoints,
                                async_save=config.async_checkpoints)
    train_iter = BatchIterator(experiment.dataset.train, config.batch_size, seed=config.seed)
    state = experiment.init_state()
    resumed_from = checkpointer.latest_step()
    if resumed_from is not None and not resume:
        raise FileExistsError(f"{checkpointer.directory} already holds checkpoints; pass "
                              "resume=True to continue or choose another workdir.")
    if resumed_from is not None:
        state, data_state = checkpointer.restore(resumed_from, state)
        train_iter.set_state(data_state)
        log.info("resumed from step %d in %s", resumed_from, workdir)
    writer = MetricWriter(workdir, resume_step=resumed_from)
    monitors = Monitors(config, experiment.graphdef, workdir, tensorboard=writer.tensorboard,
                        resume_step=resumed_from)
    stopper, best = _make_early_stopping(stop_options, workdir)
    step = int(state.step)
    eval_metrics: dict[str, float] = {}
    window: list[tuple[int, dict[str, Any]]] = []
    history: list[dict[str, float]] = []
    accumulate = int(config.optimizer.get("accumulate_steps", 1) or 1)
    started = time.perf_counter()  # wall_time counts everything from here on
    bar = tqdm(total=config.num_steps, initial=step, desc=f"{config.model.name}/"
               f"{config.data.name}", disable=not config.progress_bar, unit="step",
               dynamic_ncols=True, mininterval=0.5)
    try:
        stopped = stopper is not None and stopper.stopped_step is not None  # on resume
        while step < config.num_steps and not stopped:
            step += 1
            batch = monitors.prepare(step, next(train_iter))
            batch = jax.device_put(batch, experiment.batch_sharding)
            before = jax.tree.map(jnp.copy, state.params) if monitors.wants_dynamics(step) \
                else None
            state, metrics = experiment.train_step(state, batch)
            if before is not None:
                monitors.record_dynamics(step, before, state, batch)
            window.append((step, metrics))
            last = step == config.num_steps
            if config.log_every and (step % config.log_every == 0 or last):
                losses = [(s, float(m["loss"])) for s, m in jax.device_get(window)]
                spike = monitors.check_window(losses, state)
                if spike is not None:  # back to the last good state, with a lower rate
                    factor = backoff_factor(state.opt_state)
                    checkpointer.wait()
                    restored = checkpointer.latest_step()
                    if restored is None:  # no checkpoint yet: the initial state
                        state, restored = experiment.init_state(), 0
                    else:
                        state, _ = checkpointer.restore(restored, state)
                    state = monitors.after_rollback(spike, restored, state, factor,
                                                    dict(losses)[spike])
                    writer.close()
                    writer = MetricWriter(workdir, resume_step=restored)
                    bar.n = restored
                    step, window = restored, []
                    continue
                train_metrics = _mean_metrics([m for _, m in window])
                # the schedule counts optimizer updates (MultiSteps: one per ``accumulate``)
                train_metrics["learning_rate"] = float(
                    experiment.schedule((step - 1) // accumulate))
                writer.write(step, "train", train_metrics)
                # wall time goes to the returned history and TensorBoard, not metrics.jsonl:
                # that log stays bit-identical between identical (or resumed) runs
                wall_time = time.perf_counter() - started
                history.append({"step": step, **train_metrics, "wall_time": wall_time})
                if writer.tensorboard is not None:
                    writer.tensorboard.add_scalar("train/wall_time", wall_time, step)
                bar.set_postfix(loss=f"{train_metrics['loss']:.4f}", refresh=False)
                window = []
            if (config.eval_every and step % config.eval_every == 0) or last:
                eval_metrics = evaluate(experiment, state)
                writer.write(step, "eval", eval_metrics)
                bar.set_postfix({f"eval_{k}": f"{v:.4f}" for k, v in eval_metrics.items()},
                                refresh=False)
                if stopper is not None and _early_stopping_update(stopper, best, step,
                                                                  eval_metrics, state, workdir):
                    last = True  # patience exhausted: checkpoint this step and stop
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or last:
                checkpointer.save(step, state, train_iter.get_state())
            bar.update(1)
            if last:
                break
        if not eval_metrics:  # already finished before this call: report the final state
            eval_metrics = evaluate(experiment, state)
        if stopper is not None and stop_options["restore_best"] and stopper.best_step:
            state, _ = best.restore(stopper.best_step, state)
            eval_metrics = evaluate(experiment, state)
    finally:
        bar.close()
        checkpointer.close()
        writer.close()
        if best is not None:
            best.close()
    monitors.finish(state.params, config.plots)
    if config.plots:
        plot_curves(workdir)
    return TrainResult(state, eval_metrics, workdir, experiment, resumed_from,
                       stopper.state_dict() if stopper is not None else None, history)


def _make_early_stopping(options: dict[str, Any], workdir: pathlib.Path
                         ) -> tuple[EarlyStopping | None, Checkpointer | None]:
    """The stopper (its counters restored from ``early_stopping.json`` on resume) and a
    one-slot checkpointer for the best state, or (None, None) when patience is 0."""
    if not options["patience"]:
        return None, None
    stopper = EarlyStopping(options["patience"], options["metric"], options["mode"],
                            float(options["min_delta"]))
    record = workdir / "early_stopping.json"
    if record.exists():
        stopper.load_state_dict(json.loads(record.read_text()))
    return stopper, Checkpointer(workdir / "best", max_to_keep=1, async_save=False)


def _early_stopping_update(stopper: EarlyStopping, best: Checkpointer, step: int,
                           metrics: dict[str, float], state: TrainState,
                           workdir: pathlib.Path) -> bool:
    """Record an evaluation; save the state when it is the best so far; True to stop."""
    improved, stop = stopper.update(step, metrics)
    if improved:
        best.save(step, state)  # synchronous: the next step donates ``state``
    (workdir / "early_stopping.json").write_text(json.dumps(stopper.state_dict()))
    return stop
