"""Analysis experiments (``python -m experiments.analyze``): signal propagation and the
Hessian spectrum, on small settings, checked against closed forms and dense references."""

import json

import numpy as np
import pytest

from experiments import analyze
from experiments.analyses import hessian_spectrum, signal_propagation
from jaxdl.autodiff import products
from jaxdl.config import base_config
from jaxdl.train import build_experiment


def test_verdict_thresholds():
    verdict = signal_propagation.verdict
    assert verdict(1.0, 0.5) == "stable"
    assert verdict(1.0, 1e-4) == "vanishing"
    assert verdict(0.0, 0.0) == "vanishing"  # the signal never got through
    assert verdict(1.0, 1e4) == "exploding"
    assert verdict(1.0, float("inf")) == "exploding"


def test_signal_propagation_separates_the_schemes(tmp_path):
    # ReLU at depth 30: Glorot halves E[h^2] per layer (0.5^30 ~ 1e-9), He keeps it, and a
    # 0.01-std init collapses (He et al., 2015); LSUV rescales to unit variance.
    result = signal_propagation.run(
        workdir=tmp_path, seed=0, depth=30, width=64, batch=128, activations=("relu",),
        inits=("small_normal", "glorot_normal", "he_normal", "lsuv"))
    summary = result["summary"]
    assert summary["relu/glorot_normal"]["forward"] == "vanishing"
    assert summary["relu/small_normal"]["forward"] == "vanishing"
    assert summary["relu/he_normal"]["forward"] == "stable"
    assert summary["relu/lsuv"]["forward"] == "stable"
    first, last = summary["relu/glorot_normal"]["forward_second_moment_first_last"]
    assert 0.5 ** 29 / 30 < last / first < 0.5 ** 29 * 30
    assert (tmp_path / "signal_propagation.png").stat().st_size > 10_000


def test_analyze_cli_refuses_bad_options_before_running(tmp_path, capsys):
    code = analyze.main(["--config", "init_signal_propagation", "--workdir", str(tmp_path),
                         "--config.depth=0"])
    assert code == 2
    assert "config.depth=0" in capsys.readouterr().err
    code = analyze.main(["--config", "init_signal_propagation", "--workdir", str(tmp_path),
                         "--config.batchsize=3"])
    assert code == 2 and "batchsize" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_hessian_spectrum_matches_the_dense_hessian(tmp_path):
    train = base_config()
    train.model = {"name": "mlp", "hidden": (8,)}  # 64*8+8+8*10+10 = 610 parameters
    train.num_steps = 40
    train.mesh.data = 1
    train.progress_bar = False
    train.plots = False
    result = hessian_spectrum.run(workdir=tmp_path, seed=0, train=train, num_examples=128,
                                  top_k=3, lanczos_iters=24, density_probes=2,
                                  density_iters=12, trace_probes=160, grid_points=100)
    # Dense reference at the trained point, on the same batch.
    experiment = build_experiment(train)
    batch = {k: v[:128] for k, v in experiment.dataset.train.items()}
    saved = json.loads((tmp_path / "train" / "metrics.jsonl").read_text().splitlines()[0])
    assert saved["step"] >= 1  # training ran through the one loop
    state = experiment.init_state()
    loss_fn = products.model_loss_fn(experiment.graphdef, state.model_state, batch)
    dense = np.asarray(products.hessian(loss_fn, state.params)[0])
    eigenvalues = np.linalg.eigvalsh(dense.astype(np.float64))
    before = result["summary"]["initialization"]
    np.testing.assert_allclose(before["top_eigenvalues"], eigenvalues[::-1][:3], rtol=2e-3,
                               atol=1e-5)
    exact_trace = float(np.trace(dense))
    assert abs(before["trace"] - exact_trace) < 4 * before["trace_std_error"] + 1e-6
    after = result["summary"]["trained"]
    assert after["loss"] < before["loss"]
    density = np.asarray(result["density"]["trained"])
    grid = np.asarray(result["density"]["grid"])
    assert abs(np.sum(density) * (grid[1] - grid[0]) - 1.0) < 0.05  # a probability density
    assert (tmp_path / "hessian_spectrum.png").exists()



@pytest.mark.slow
def test_evaluation_report_agrees_with_the_loops_evaluation(tmp_path):
    from experiments.analyses import evaluation_report

    train = base_config()
    train.model = {"name": "mlp", "hidden": (32,)}
    train.num_steps = 40
    train.optimizer.warmup_steps = 5
    train.mesh.data = 1
    train.progress_bar = False
    train.plots = False
    result = evaluation_report.run(workdir=tmp_path, seed=0, train=train, worst_k=8)
    # Two implementations of the held-out metrics: the compiled eval step's masked sums
    # (written by the loop) and the host-side numpy report.
    records = [json.loads(line) for line in
               (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    final_eval = [r for r in records if r["split"] == "eval"][-1]
    summary = result["summary"]
    assert summary["accuracy"] == pytest.approx(final_eval["accuracy"], abs=1e-5)
    assert summary["nll"] == pytest.approx(final_eval["loss"], abs=1e-4)
    assert summary["perplexity"] == pytest.approx(np.exp(final_eval["loss"]), rel=1e-3)
    counts = np.asarray(result["confusion_matrix"])
    assert counts.sum() == 359 and np.trace(counts) / 359 == pytest.approx(
        summary["accuracy"], abs=1e-5)
    for name in result["figures"]:
        assert (tmp_path / name).stat().st_size > 5000
