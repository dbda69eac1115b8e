"""The training loop: it learns, it is deterministic, and it resumes exactly."""

import json
import shutil

import pytest

from jaxdl.checkpoint import Checkpointer
from jaxdl.monitor import read_metrics
from jaxdl.train import build_experiment, train_and_evaluate
from tests.helpers import tiny_config, tree_hash, trees_equal


def test_quickstart_learns_digits(tmp_path):
    """A real training curve: 150 steps of the quickstart CNN reach >= 93% held-out."""
    config = tiny_config(num_steps=150, eval_every=50, checkpoint_every=150, plots=True,
                         **{"monitor.grad_norm": True})
    result = train_and_evaluate(config, tmp_path)
    evals = read_metrics(tmp_path, "eval")
    assert [r["step"] for r in evals] == [50, 100, 150]
    assert result.eval_metrics["accuracy"] >= 0.93
    train = read_metrics(tmp_path, "train")
    assert train[-1]["loss"] < 0.25 * train[0]["loss"]
    assert all(r["grad_norm"] > 0 for r in train)  # the monitor switched on by config
    assert (tmp_path / "curves.png").stat().st_size > 5000
    assert json.loads((tmp_path / "config.json").read_text())["config"]["num_steps"] == 150
    assert any((tmp_path / "tensorboard").iterdir())
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 150


def test_same_config_and_seed_give_identical_runs(tmp_path):
    config = tiny_config(num_steps=30)
    first = train_and_evaluate(config, tmp_path / "a")
    second = train_and_evaluate(config, tmp_path / "b")
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    assert tree_hash(first.state.params) == tree_hash(second.state.params)
    other = train_and_evaluate(tiny_config(num_steps=30, seed=1), tmp_path / "c")
    assert tree_hash(other.state.params) != tree_hash(first.state.params)


def test_resume_continues_bit_identically(tmp_path):
    """A run restarted from the step-20 checkpoint of a 40-step run ends bit-identical to it,
    with the same metrics log (the state, data position and PRNG keys all come back)."""
    straight = train_and_evaluate(tiny_config(num_steps=40), tmp_path / "straight")
    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "20",
                    tmp_path / "resumed" / "checkpoints" / "20")
    shutil.copy(tmp_path / "straight" / "metrics.jsonl", tmp_path / "resumed")
    resumed = train_and_evaluate(tiny_config(num_steps=40), tmp_path / "resumed")
    assert resumed.resumed_from == 20
    assert trees_equal(resumed.state, straight.state)
    assert read_metrics(tmp_path / "resumed") == read_metrics(tmp_path / "straight")


def test_existing_checkpoints_are_not_overwritten_without_resume(tmp_path):
    train_and_evaluate(tiny_config(num_steps=10), tmp_path)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train_and_evaluate(tiny_config(num_steps=10), tmp_path, resume=False)


def test_data_parallel_run_matches_single_device(tmp_path):
    one = train_and_evaluate(tiny_config(num_steps=20), tmp_path / "one")
    eight = train_and_evaluate(tiny_config(num_steps=20, **{"mesh.data": 8}), tmp_path / "8")
    assert eight.eval_metrics["accuracy"] == pytest.approx(one.eval_metrics["accuracy"],
                                                           abs=0.01)
    assert eight.eval_metrics["loss"] == pytest.approx(one.eval_metrics["loss"], rel=1e-3)


def test_bad_config_fails_before_building(tmp_path):
    config = tiny_config()
    config.model.features = (0,)  # passes type checks; the model rejects it when built
    config.batch_size = 5000
    from jaxdl.config import ConfigError

    with pytest.raises(ConfigError, match="config.batch_size=5000 exceeds the 1438"):
        build_experiment(config)
