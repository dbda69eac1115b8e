"""The trainer's ``precision`` and ``microbatches`` options (jaxdl.parallel.precision,
jaxdl.parallel.accumulate) through the one training loop."""

import numpy as np
import pytest

from jaxdl.registry import ConfigError
from jaxdl.train import build_experiment, train_and_evaluate
from tests.helpers import tiny_config


def _run(tmp_path, name, **changes):
    config = tiny_config(num_steps=12, eval_every=12, checkpoint_every=0, batch_size=32,
                         **changes)
    return train_and_evaluate(config, tmp_path / name)


def test_microbatches_give_the_large_batch_update(tmp_path):
    """Accumulating 4 microbatches of 8 in one step equals one batch of 32 (mean loss)."""
    whole = _run(tmp_path, "whole")
    for mode in ("scan", "unroll"):  # unroll: independent passes over strided slices
        micro = _run(tmp_path, f"micro_{mode}", microbatches=4, microbatch_mode=mode)
        for a, b in zip(whole.history, micro.history, strict=True):
            np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-5)
        np.testing.assert_allclose(whole.eval_metrics["loss"], micro.eval_metrics["loss"],
                                   rtol=1e-4)


def test_f16_policy_scales_the_loss_and_tracks_f32(tmp_path):
    f32 = _run(tmp_path, "f32")
    f16 = _run(tmp_path, "f16", **{"precision.policy": "f16", "precision.init_scale": 256.0})
    scales = [r["loss_scale"] for r in f16.history]
    assert scales and all(s >= 256.0 for s in scales)  # no overflow on this problem
    assert "loss_scale" not in f32.history[0]
    np.testing.assert_allclose(f16.eval_metrics["loss"], f32.eval_metrics["loss"], rtol=0.05)


@pytest.mark.parametrize("changes, field", [
    ({"precision.policy": "fp8"}, "precision.policy"),
    ({"microbatches": 5}, "config.microbatches"),
    ({"microbatch_mode": "parallel"}, "config.microbatch_mode='parallel'.*unroll"),
])
def test_bad_precision_options_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        build_experiment(tiny_config(**changes))


def test_fastest_cpu_cnn_recipe_gives_the_default_update(tmp_path):
    """The CNN recipe the CNN bench times fastest on CPU (``jaxdl.models.cnn``: conv_fast
    weight gradients, YNNPACK convolutions, 4 unrolled microbatches) trains like the default
    step, to float32 rounding (conv_fast's chunked sums and the microbatch sums reorder it)."""
    whole = _run(tmp_path, "whole")
    recipe = _run(tmp_path, "recipe", microbatches=4, microbatch_mode="unroll",
                  xla_cpu_convolutions="ynnpack", **{"model.fast_conv": True})
    for a, b in zip(whole.history, recipe.history, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
    np.testing.assert_allclose(whole.eval_metrics["loss"], recipe.eval_metrics["loss"],
                               rtol=1e-3)
    with pytest.raises(ValueError, match="model.fast_conv='yes'"):
        build_experiment(tiny_config(**{"model.fast_conv": "yes"}))
