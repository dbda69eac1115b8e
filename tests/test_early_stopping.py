"""Early stopping: the bookkeeping, and the loop option (stop, restore the best checkpoint,
stay stopped on resume, refuse bad settings before compiling)."""

import pytest

from jaxdl.checkpoint import Checkpointer
from jaxdl.monitor import read_metrics
from jaxdl.registry import ConfigError
from jaxdl.regularize.early_stopping import EarlyStopping
from jaxdl.train import train_and_evaluate
from tests.helpers import tiny_config, trees_equal


def test_patience_and_min_delta():
    stopper = EarlyStopping(patience=2, metric="loss", mode="min", min_delta=0.05)
    results = [stopper.update(step, {"loss": loss}) for step, loss in
               enumerate([1.0, 0.9, 0.88, 0.7, 0.69, 0.68], start=1)]
    assert results == [(True, False), (True, False), (False, False), (True, False),
                       (False, False), (False, True)]
    assert stopper.best_step == 4 and stopper.best_value == 0.7 and stopper.stopped_step == 6
    again = EarlyStopping(patience=2)
    again.load_state_dict(stopper.state_dict())
    assert again.state_dict() == stopper.state_dict()
    maximize = EarlyStopping(patience=1, metric="accuracy", mode="max")
    assert maximize.update(1, {"accuracy": 0.5}) == (True, False)
    assert maximize.update(2, {"accuracy": 0.4}) == (False, True)
    with pytest.raises(ConfigError, match="early_stopping.metric='accuracy'"):
        maximize.update(3, {"loss": 0.1})


def test_loop_stops_restores_best_and_stays_stopped(tmp_path):
    # Maximizing the held-out *loss* while training lowers it: the first evaluation stays the
    # best, so with patience 2 the run must stop at the third evaluation (step 30 of 60).
    config = tiny_config(num_steps=60, eval_every=10, checkpoint_every=60, **{
        "early_stopping.patience": 2, "early_stopping.metric": "loss",
        "early_stopping.mode": "max"})
    result = train_and_evaluate(config, tmp_path)
    evals = read_metrics(tmp_path, "eval")
    assert [r["step"] for r in evals] == [10, 20, 30]
    assert evals[1]["loss"] < evals[0]["loss"]  # training really moved on
    assert result.early_stopping == {"best_value": evals[0]["loss"], "best_step": 10,
                                     "bad_evals": 2, "stopped_step": 30}
    assert int(result.state.step) == 10  # the best state, not the last
    assert result.eval_metrics["loss"] == pytest.approx(evals[0]["loss"], rel=1e-6)
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 30
    again = train_and_evaluate(config, tmp_path)
    assert again.resumed_from == 30 and trees_equal(again.state, result.state)
    assert len(read_metrics(tmp_path, "eval")) == 3


def test_default_keeps_todays_behaviour_and_bad_settings_fail_early(tmp_path):
    result = train_and_evaluate(tiny_config(num_steps=10, eval_every=5), tmp_path / "a")
    assert result.early_stopping is None and int(result.state.step) == 10
    for key, value, match in [("patience", -1, "patience=-1"), ("mode", "up", "mode='up'"),
                              ("min_delta", -0.5, "min_delta=-0.5")]:
        with pytest.raises(ConfigError, match=f"config.early_stopping.{match}"):
            train_and_evaluate(tiny_config(**{f"early_stopping.{key}": value}), tmp_path / key)
        assert not (tmp_path / key).exists()  # refused before any work
