"""Vision Transformer: patches, shapes, option errors, and learning on digits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import tiny_config

from jaxdl.models import MODELS
from jaxdl.models.vit import patchify
from jaxdl.train import train_and_evaluate


def test_patchify_is_a_permutation_of_pixels():
    x = jnp.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
    patches = patchify(x, 2)
    assert patches.shape == (2, 6, 12)
    np.testing.assert_array_equal(patches[0, 0], x[0, :2, :2].reshape(-1))
    np.testing.assert_array_equal(patches[1, 4], x[1, 2:4, 2:4].reshape(-1))  # row 1, col 1
    np.testing.assert_array_equal(np.sort(patches.reshape(-1)), np.sort(x.reshape(-1)))


def _vit(**options):
    section = {"name": "vit", "patch_size": 4, "d_model": 16, "num_layers": 2,
               "num_heads": 2, **options}
    return MODELS.build(section, field="model", input_shape=(8, 8, 1), num_classes=10,
                        rngs=nnx.Rngs(0))


def test_vit_shapes_and_attention_maps():
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    model = _vit(pool="mean", scan_layers=True)
    logits, maps = nnx.jit(lambda m, x: (m(x), m.attention_weights(x)))(model, x)
    assert logits.shape == (3, 10)
    assert maps.shape == (2, 3, 2, 5, 5)  # layers, batch, heads, 1 + 4 patches
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("options,match", [({"patch_size": 3}, "model.patch_size=3"),
                                           ({"pool": "max"}, "model.pool='max'")])
def test_vit_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        _vit(**options)


@pytest.mark.slow
def test_vit_learns_digits(tmp_path):
    """150 steps on the 8x8 digits: held-out accuracy above 0.8 (chance 0.1)."""
    config = tiny_config()
    config.model = {"name": "vit", "patch_size": 2, "d_model": 32, "num_layers": 2,
                    "num_heads": 4, "mlp_ratio": 2}
    config.optimizer.learning_rate = 3e-3
    config.num_steps = config.eval_every = config.checkpoint_every = 150
    result = train_and_evaluate(config, tmp_path)
    assert result.eval_metrics["accuracy"] > 0.8, result.eval_metrics
