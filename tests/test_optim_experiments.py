"""Optimizer experiments: closed-form rates on the ill-conditioned quadratic, and a tiny
optimizer comparison whose curves carry wall time (and the loop's logged learning rate)."""

import json
import math

import numpy as np
import pytest

from experiments.analyses import ill_conditioned_quadratic as quad
from experiments.analyses import optimizer_comparison
from jaxdl.config import base_config
from jaxdl.optim.schedules import make_schedule
from jaxdl.registry import ConfigError


@pytest.mark.parametrize("kappa", [30.0, 300.0])
def test_gradient_descent_matches_the_closed_form_rate(kappa):
    """Optimal-step GD needs the closed-form ceil(ln(1/tol) / ln((k+1)/(k-1))) iterations,
    less the head start of w0 spreading its error over d eigenvectors (only the two extreme
    ones decay at the worst rate): within [bound - ln(sqrt(d/2)) / ln(1/rho) - 1, bound]."""
    tol, dim = 1e-6, 20
    problem = quad.make_problem(kappa, dim, seed=0)
    gd = len(quad.run_method(problem, "gd", tol, 100000)) - 1
    bound = quad.gd_iteration_bound(kappa, tol)
    rho = (kappa - 1) / (kappa + 1)
    head_start = math.log(math.sqrt(dim / 2)) / math.log(1 / rho)
    assert bound - head_start - 1 <= gd <= bound, (gd, bound, head_start)
    # heavy ball: about sqrt(kappa) instead of kappa
    momentum = len(quad.run_method(problem, "momentum", tol, 100000)) - 1
    assert quad.momentum_rate_estimate(kappa, tol) * 0.7 <= momentum <= gd / 2.5
    # Fisher of the Gaussian model == Hessian: natural gradient is Newton (1 iteration);
    # with step 0.5 it halves the error each iteration whatever kappa
    np.testing.assert_allclose(problem["fisher"], problem["hessian"], rtol=1e-10)
    assert len(quad.run_method(problem, "newton", tol, 10)) - 1 == 1
    assert len(quad.run_method(problem, "natural_gradient", tol, 10)) - 1 == 1
    half = len(quad.run_method(problem, "natural_gradient", tol, 100, eta=0.5)) - 1
    assert half == math.ceil(math.log(tol) / math.log(0.5))


def test_quadratic_analysis_rejects_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="kappas"):
        quad.run(workdir=tmp_path, seed=0, kappas=(0.5,))


def test_tiny_optimizer_comparison_curves_carry_wall_time(tmp_path):
    """SGD (with gradient accumulation and a linear schedule) and K-FAC on digits: each
    curve's wall_time increases and its loss falls; the loop logs the learning rate of the
    optimizer-update count (step - 1) // accumulate_steps."""
    train = base_config()
    train.data = {"name": "digits"}
    train.model = {"name": "mlp", "hidden": (16,)}
    train.batch_size = 32
    train.num_steps = 40
    train.log_every = 5
    train.eval_every = 0
    train.checkpoint_every = 0
    train.mesh.data = 1
    optimizers = {
        "sgd": {"name": "sgd", "learning_rate": 0.5, "schedule": "linear",
                "accumulate_steps": 2},
        "kfac": {"name": "kfac", "learning_rate": 0.03, "damping": 0.1,
                 "inverse_every": 5},
    }
    result = optimizer_comparison.run(workdir=tmp_path, seed=0, train=train,
                                      optimizers=optimizers)
    for label, curve in result["curves"].items():
        assert curve["step"] == list(range(5, 41, 5))
        assert np.all(np.diff(curve["wall_time"]) > 0), label
        assert np.mean(curve["loss"][-2:]) < 0.8 * curve["loss"][0], (label, curve["loss"])
    assert {r["optimizer"] for r in result["table"]} == {"sgd", "kfac"}
    assert all(r["eval_accuracy"] > 0.5 for r in result["table"]), result["table"]
    for name in result["figures"]:
        assert (tmp_path / name).stat().st_size > 10_000
    schedule = make_schedule("linear", 0.5, 40 // 2)
    logged = [json.loads(line) for line in (tmp_path / "sgd" / "metrics.jsonl").open()]
    rates = {r["step"]: r["learning_rate"] for r in logged if r["split"] == "train"}
    for step, rate in rates.items():
        assert rate == pytest.approx(float(schedule((step - 1) // 2)), rel=1e-6), step
    assert len(set(rates.values())) > 3  # the schedule really moves
