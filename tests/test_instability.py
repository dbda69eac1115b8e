"""Instability monitors: NaN skipping with a named layer, spike rollback with LR back-off,
the recompilation guard, training dynamics; silent on a clean run."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.checkpoint import Checkpointer
from jaxdl.config import base_config
from jaxdl.monitor import dynamics, instability
from jaxdl.monitor.reproducibility import params_fingerprint
from jaxdl.registry import ConfigError
from jaxdl.train import build_experiment, train_and_evaluate


def config_for(num_steps=40, **monitor):
    config = base_config()
    config.model = {"name": "mlp", "hidden": (32, 16)}
    config.num_steps = num_steps
    config.log_every = 5
    config.eval_every = 0
    config.checkpoint_every = 10
    config.keep_checkpoints = 10
    config.async_checkpoints = False
    config.optimizer.warmup_steps = 0
    config.optimizer.schedule = "constant"
    config.optimizer.learning_rate = 1e-3
    config.mesh.data = 1
    config.progress_bar = False
    config.plots = False
    config.monitor.update(monitor)
    return config


def events(workdir):
    text = (workdir / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_spike_detector_and_backoff_transformation():
    detector = instability.SpikeDetector(threshold=3.0, window=20, min_history=5)
    losses = [(i, 1.0 + 0.01 * (i % 3)) for i in range(10)]
    assert detector.check(losses) is None
    assert detector.check([(10, 1.1), (11, float("nan")), (12, 5.0)]) == 12
    # Late in training: 5x the median but only 0.08 nats above it is minibatch noise.
    quiet = instability.SpikeDetector(threshold=3.0, window=20, min_history=5)
    assert quiet.check([(i, 0.02) for i in range(10)] + [(10, 0.1)]) is None
    assert quiet.check([(11, 0.9)]) == 11
    tx = optax.chain(optax.sgd(0.1), instability.lr_backoff())
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    assert instability.backoff_factor(state) == 1.0
    state = instability.set_backoff_factor(state, 0.25)
    updates, _ = tx.update({"w": jnp.ones(3)}, state, params)
    np.testing.assert_allclose(updates["w"], -0.1 * 0.25)
    with pytest.raises(ValueError, match="threshold"):
        instability.SpikeDetector(threshold=0.5)


def test_clean_run_stays_silent_and_records_dynamics(tmp_path):
    config = config_for(num_steps=20, skip_nonfinite=True, spike_threshold=4.0,
                        spike_window=10, dynamics_every=5)
    config.plots = True
    result = train_and_evaluate(config, tmp_path)
    assert events(tmp_path) == []
    records = dynamics.read_dynamics(tmp_path)
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    layers = records[-1]["layers"]
    assert list(layers) == ["layers/0", "layers/1", "head"]  # execution order
    for stats in layers.values():
        assert stats["param_grad_norm"] > 0 and 0 < stats["update_to_param"] < 1
        assert 0 <= stats["dead_unit_fraction"] <= 1
    assert (tmp_path / "dynamics.png").exists() and (tmp_path / "diagnosis.txt").exists()
    assert "gradient flow OK" in (tmp_path / "diagnosis.txt").read_text()
    assert np.isfinite(result.eval_metrics["loss"])


def test_nan_batch_is_skipped_and_the_layer_named(tmp_path, caplog):
    config = config_for(num_steps=15, skip_nonfinite=True, inject_nan_steps=(7,))
    with caplog.at_level(logging.WARNING):
        result = train_and_evaluate(config, tmp_path)
    (event,) = events(tmp_path)
    assert event["step"] == 7 and event["event"] == "nonfinite_skipped"
    assert event["first_offender"] == "input"
    assert "step 7: non-finite loss" in caplog.text
    state = result.state.opt_state
    assert instability.nonfinite_count(state) == 1
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(result.state.params))
    train = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    window = [r for r in train if r["split"] == "train" and r["step"] == 10][0]
    assert window["nonfinite_steps"] == 1 and np.isfinite(window["loss"])


def test_locate_nonfinite_names_the_first_layer_in_execution_order():
    experiment = build_experiment(config_for())
    state = experiment.init_state()
    params = jax.tree.map(np.array, state.params)
    params["layers"][1]["kernel"][0, 0] = np.inf  # the second hidden layer's weights
    batch = {k: v[:8] for k, v in experiment.dataset.train.items()}
    where = instability.locate_nonfinite(experiment.graphdef, params, state.model_state, batch)
    assert where == "layers/1 (activation)"
    assert instability.locate_nonfinite(experiment.graphdef, state.params, state.model_state,
                                        batch) == "none"


@pytest.mark.slow
def test_spike_rolls_back_exactly_and_training_completes(tmp_path):
    config = config_for(num_steps=40, spike_threshold=3.0, spike_window=10,
                        inject_spike_steps=(23,))
    result = train_and_evaluate(config, tmp_path)
    (event,) = events(tmp_path)
    assert event["event"] == "spike_rollback" and event["step"] == 23
    assert event["restored_step"] == 20 and event["lr_factor"] == 0.5
    assert instability.backoff_factor(result.state.opt_state) == 0.5
    assert int(result.state.step) == 40 and np.isfinite(result.eval_metrics["loss"])
    # Training continued from exactly the parameters saved at step 20.
    checkpointer = Checkpointer(tmp_path / "checkpoints", async_save=False)
    saved, _ = checkpointer.restore(20, result.state)
    checkpointer.close()
    assert int(saved.step) == 20
    assert event["restored_params_sha256"] == params_fingerprint(saved.params)
    records = [json.loads(line) for line in
               (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["split"] == "train"]
    assert steps == list(range(5, 41, 5))  # the log was rewound: no step twice


def test_monitor_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="config.monitor.spike_threshold=0.5"):
        build_experiment(config_for(spike_threshold=0.5))
    bad = config_for(spike_threshold=3.0)
    bad.checkpoint_every = 7
    with pytest.raises(ConfigError, match="config.checkpoint_every=7"):
        build_experiment(bad)


def test_recompilation_guard_warns(caplog):
    counted = instability.TraceCounter(lambda x: x * 2, "double")
    jitted = jax.jit(counted)
    jitted(jnp.ones(3))
    jitted(jnp.ones(3))
    assert counted.count == 1
    with caplog.at_level(logging.WARNING):
        jitted(jnp.ones(4))  # a new shape: traced again
    assert counted.count == 2 and "double traced 2 times" in caplog.text
