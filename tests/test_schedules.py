"""Schedules against their closed forms; batch-size scaling rules; the LR range test."""

import math

import numpy as np
import pytest

from jaxdl.optim import make_schedule, scale_learning_rate
from jaxdl.optim.lr_range import lr_range_report, suggest_learning_rate
from tests.helpers import tiny_config

T, LR = 100, 0.4
STEPS = [0, 1, 7, 10, 33, 50, 99, 100]


def closed(name, t, **kw):
    if name == "constant":
        return LR
    if name == "step":
        return LR * 0.5 ** math.floor(t / 20)
    if name == "exponential":
        return LR * 0.5 ** (t / 20)
    if name == "polynomial":
        return 0.1 * LR + 0.9 * LR * (1 - min(t, T) / T) ** 2
    if name == "linear":
        return LR + (0.1 * LR - LR) * min(t, T) / T
    if name == "cosine":
        return 0.1 * LR + 0.9 * LR * (1 + math.cos(math.pi * min(t, T) / T)) / 2
    if name == "cyclical":  # triangle between 0.1 LR and LR, half-period 20
        phase = (t / 20) % 2
        return 0.1 * LR + 0.9 * LR * (1 - abs(phase - 1))
    if name == "range_test":
        return 0.1 * LR * 10 ** (t / (T - 1))
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["constant", "step", "exponential", "polynomial", "linear",
                                  "cosine", "cyclical", "range_test"])
def test_schedule_closed_forms(name):
    schedule = make_schedule(name, LR, T, final_fraction=0.1, decay_steps=20, decay_rate=0.5,
                             power=2.0, cycle_steps=20)
    for t in STEPS:
        assert float(schedule(t)) == pytest.approx(closed(name, t), rel=1e-5), (name, t)


def test_warmup_is_prepended_linearly():
    schedule = make_schedule("step", LR, T, warmup_steps=10, decay_steps=20, decay_rate=0.5)
    assert float(schedule(5)) == pytest.approx(LR / 2)
    assert float(schedule(10)) == pytest.approx(LR)
    assert float(schedule(35)) == pytest.approx(LR * 0.5)  # 25 steps into the decay


def test_one_cycle_shape():
    schedule = make_schedule("one_cycle", LR, T)
    values = np.array([float(schedule(t)) for t in range(T + 1)])
    assert values[0] == pytest.approx(LR / 25, rel=1e-5)
    assert int(values.argmax()) == 30 and values.max() == pytest.approx(LR, rel=1e-5)
    assert values[-1] == pytest.approx(LR / 25 / 1e4, rel=1e-3)
    assert np.all(np.diff(values[:31]) > 0) and np.all(np.diff(values[30:]) < 0)


def test_batch_size_scaling_rules():
    assert scale_learning_rate(0.1, 256, 1024) == pytest.approx(0.4)
    assert scale_learning_rate(1e-3, 256, 1024, "sqrt") == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="rule='cube'"):
        scale_learning_rate(0.1, 256, 512, "cube")


def test_suggestion_on_a_curve_with_a_known_steepest_point():
    """loss = 2 - tanh(log10(rate) + 3) falls fastest at rate 1e-3; blows up past 1e-1."""
    rates = np.logspace(-6, 0, 300)
    losses = 2 - np.tanh(np.log10(rates) + 3) + np.where(rates > 0.1, 50 * (rates - 0.1), 0)
    result = suggest_learning_rate(rates, losses, beta=0.0)
    assert result["steepest"] == pytest.approx(1e-3, rel=0.06)
    assert 1e-3 < result["min_loss_rate"] <= 0.15
    assert result["suggested"] <= result["steepest"]


def test_range_test_through_the_training_loop(tmp_path):
    from jaxdl.train import train_and_evaluate

    config = tiny_config(num_steps=60, log_every=1, eval_every=0, checkpoint_every=0)
    config.model = {"name": "mlp", "hidden": (32,)}
    config.optimizer = {"name": "sgd", "learning_rate": 10.0, "schedule": "range_test",
                        "final_fraction": 1e-4}
    train_and_evaluate(config, tmp_path)
    result = lr_range_report(tmp_path)
    assert (tmp_path / "lr_range.png").stat().st_size > 1000
    # a real curve: the loss must have dropped below its start somewhere in the sweep
    assert 1e-3 <= result["suggested"] <= 10.0
