"""Run records and the determinism check: identical runs agree, planted differences show."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.config import base_config
from jaxdl.monitor import reproducibility as R


def tiny_config():
    config = base_config()
    config.model = {"name": "mlp", "hidden": (16,)}
    config.num_steps = 12
    config.optimizer.warmup_steps = 2
    config.eval_every = 6
    config.log_every = 3
    config.checkpoint_every = 0
    config.batch_size = 32
    config.mesh.data = 1
    config.progress_bar = False
    config.plots = False
    return config


def test_fingerprint_is_bit_exact():
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)}
    same = jax.tree.map(jnp.array, tree)
    assert R.params_fingerprint(tree) == R.params_fingerprint(same)
    nudged = {**tree, "b": tree["b"].at[1].set(np.nextafter(np.float32(0), np.float32(1)))}
    assert R.params_fingerprint(nudged) != R.params_fingerprint(tree)
    renamed = {"w2": tree["w"], "b": tree["b"]}
    assert R.params_fingerprint(renamed) != R.params_fingerprint(tree)


@pytest.mark.slow
def test_determinism_check_agrees_and_detects_a_planted_difference(tmp_path):
    config = tiny_config()
    report = R.determinism_check(config, tmp_path)
    assert report.identical, str(report)
    # The run record: seed, versions, git commit, devices.
    info = json.loads((tmp_path / "run_a" / "config.json").read_text())
    assert info["seed"] == 0 and info["packages"]["jax"] == jax.__version__
    assert info["devices"] and "commit" in info["git"]
    # Plant one difference in the params and one in a metric record.
    from jaxdl.monitor.writers import read_metrics
    from jaxdl.train import train_and_evaluate

    result = train_and_evaluate(config, tmp_path / "run_c")
    params = result.state.params
    planted = jax.tree.map(lambda x: x, params)
    planted["head"]["bias"] = planted["head"]["bias"].at[0].add(1e-6)
    metrics = read_metrics(tmp_path / "run_c")
    changed = [dict(r) for r in metrics]
    changed[2]["loss"] = changed[2]["loss"] + 1e-7
    diff = R.compare_runs(params, planted, metrics, changed)
    assert not diff.identical and not diff.params_equal
    assert [d["key"] for d in diff.metric_differences] == ["loss"]
    assert "DIFFER" in str(diff)
    same = R.compare_runs(params, params, metrics, metrics)
    assert same.identical
    with pytest.raises(FileExistsError):
        R.determinism_check(config, tmp_path)
