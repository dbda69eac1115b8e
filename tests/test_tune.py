"""Search strategies on synthetic objectives and one real training; scaling-law fits."""

import math

import numpy as np
import pytest

from jaxdl import tune
from jaxdl.registry import ConfigError

SPACE = {"x": ("uniform", -2.0, 2.0), "lr": ("log_uniform", 1e-4, 1e-1),
         "width": ("int", 4, 8), "act": ("choice", ["relu", "tanh"])}


def synthetic(calls):
    """Lower is better; the true quality is (x - 0.7)^2, observed with noise ~ 1/budget."""

    def objective(overrides, budget, trial_id):
        calls.append((trial_id, budget))
        noise = math.sin(12.9898 * trial_id + 78.233 * budget) * 0.5 / budget
        return (overrides["x"] - 0.7) ** 2 + noise

    return objective


def test_sampling_respects_the_space():
    rng = np.random.default_rng(0)
    draws = [tune.sample(SPACE, rng) for _ in range(500)]
    xs, lrs = np.array([d["x"] for d in draws]), np.array([d["lr"] for d in draws])
    assert xs.min() >= -2 and xs.max() <= 2
    assert 1e-4 <= lrs.min() and lrs.max() <= 1e-1
    assert abs(np.median(np.log10(lrs)) + 2.5) < 0.2  # uniform in log space
    assert {d["width"] for d in draws} == {4, 5, 6, 7, 8}
    with pytest.raises(ConfigError, match="space\\['x'\\]"):
        tune.check_space({"x": ("normal", 0, 1)})
    with pytest.raises(ConfigError, match="low > 0"):
        tune.check_space({"lr": ("log_uniform", 0.0, 1.0)})


def test_successive_halving_keeps_the_best_configuration():
    candidates = [{"x": x} for x in np.linspace(-2, 2, 27)]
    calls = []
    rungs = tune.successive_halving(synthetic(calls), candidates, min_budget=1, eta=3)
    assert [len(r) for r in rungs] == [27, 9, 3, 1]
    assert [r[0].budget for r in rungs] == [1, 3, 9, 27]
    best_x = candidates[int(np.argmin([(c["x"] - 0.7) ** 2 for c in candidates]))]["x"]
    assert rungs[-1][0].overrides["x"] == best_x
    assert len(calls) == 27 + 9 + 3 + 1  # nothing evaluated twice at one budget
    assert tune.best_trial(rungs).overrides["x"] == best_x


def test_random_search_and_hyperband():
    trials = tune.random_search(synthetic([]), SPACE, num_trials=20, budget=100, seed=1)
    assert len(trials) == 20 and trials[0].score == min(t.score for t in trials)
    calls = []
    brackets = tune.hyperband(synthetic(calls), SPACE, max_budget=27, eta=3, seed=0)
    # s_max = 3: brackets start 27, 12 (=ceil(4/3*9)), 6 and 4 configurations.
    assert [len(b[0]) for b in brackets] == [27, 12, 6, 4]
    assert all(b[-1][0].budget == 27 for b in brackets)
    best = tune.best_trial(brackets)
    assert best.budget == 27 and abs(best.overrides["x"] - 0.7) < 0.3


@pytest.mark.slow
def test_successive_halving_with_real_trainings(tmp_path):
    from jaxdl.config import base_config

    config = base_config()
    config.model = {"name": "mlp", "hidden": (32,)}
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_steps = 0
    config.mesh.data = 1
    config.plots = False
    config.eval_every = 0
    config.checkpoint_every = 0
    objective = tune.training_objective(config, tmp_path, metric="accuracy", maximize=True)
    candidates = [{"optimizer.learning_rate": lr} for lr in (1e-5, 3e-3, 1e-7)]
    rungs = tune.successive_halving(objective, candidates, min_budget=20, eta=3)
    assert rungs[-1][0].overrides["optimizer.learning_rate"] == 3e-3
    assert rungs[-1][0].budget == 60 and -rungs[-1][0].score > 0.8
    # The promoted trial resumed from its 20-step checkpoint rather than starting over.
    assert (tmp_path / "trial_001" / "checkpoints" / "60").exists()


def test_power_law_fits_recover_the_exponents():
    rng = np.random.default_rng(0)
    n = np.logspace(3, 7, 12)
    law = tune.PowerLaw(a=40.0, alpha=0.35, c=1.7)
    fit = tune.fit_power_law(n, law(n) * np.exp(rng.normal(0, 0.003, n.size)))
    assert fit.alpha == pytest.approx(0.35, abs=0.03) and fit.c == pytest.approx(1.7, rel=0.05)
    truth = tune.ChinchillaLaw(e=1.69, a=406.4, alpha=0.34, b=410.7, beta=0.28)
    grid_n, grid_d = np.meshgrid(np.logspace(6, 9, 6), np.logspace(8, 11, 6))
    loss = truth(grid_n, grid_d) * np.exp(rng.normal(0, 0.002, grid_n.shape))
    fit = tune.fit_chinchilla(grid_n, grid_d, loss)
    assert fit.alpha == pytest.approx(0.34, abs=0.04) and fit.beta == pytest.approx(0.28, abs=0.04)
    assert fit.e == pytest.approx(1.69, rel=0.05)
    n_opt, d_opt = fit.compute_optimal(1e21)
    assert 6 * n_opt * d_opt == pytest.approx(1e21, rel=1e-9)
    # The optimum beats its neighbours on the same budget.
    for factor in (0.5, 2.0):
        assert fit(n_opt, d_opt) < fit(n_opt * factor, d_opt / factor)
    with pytest.raises(ValueError, match="> 0"):
        tune.fit_power_law([1, 2, 3], [1.0, -1.0, 0.5])
