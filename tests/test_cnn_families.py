"""CNN families: parameter counts against published figures (abstract shapes, nothing
allocated), forward shapes on tiny inputs, block-level properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models import MODELS
from jaxdl.models.efficientnet import compound_scaling
from jaxdl.models.highway import HighwayLayer
from jaxdl.models.resnet import BasicBlock, Bottleneck
from jaxdl.models.vgg import VGG16


def abstract_param_count(section, input_shape=(224, 224, 3), num_classes=1000):
    model = nnx.eval_shape(lambda: MODELS.build(section, field="model", input_shape=input_shape,
                                                num_classes=num_classes, rngs=nnx.Rngs(0)))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


# Published counts (torchvision / Keras model summaries of the papers' networks).
PUBLISHED = [
    ({"name": "resnet", "depth": 18, "stem": "imagenet"}, 11_689_512),  # 11.69M
    ({"name": "resnet", "depth": 34, "stem": "imagenet"}, 21_797_672),  # 21.80M
    ({"name": "resnet", "depth": 50, "stem": "imagenet"}, 25_557_032),  # 25.56M
    ({"name": "mobilenet_v2", "small_input": False}, 3_504_872),  # 3.50M
    ({"name": "efficientnet", "small_input": False}, 5_288_548),  # 5.29M
    ({"name": "mobilenet_v1", "small_input": False}, 4_231_976),  # 4.23M (Keras, trainable)
    ({"name": "densenet", "small_input": False}, 7_978_856),  # DenseNet-121, 7.98M
    ({"name": "vgg", "stages": VGG16, "hidden": (4096, 4096)}, 138_357_544),  # VGG-16
]


@pytest.mark.parametrize("section,expected", PUBLISHED,
                         ids=[f"{s['name']}{s.get('depth', '')}" for s, _ in PUBLISHED])
def test_parameter_count_matches_published(section, expected):
    assert abstract_param_count(section) == expected


def test_lenet5_parameter_count():
    # conv 5*5*1*6+6, conv 5*5*6*16+16, 400*120+120, 120*84+84, 84*10+10
    assert abstract_param_count({"name": "lenet5"}, (28, 28, 1), 10) == 61_706


def test_preact_resnet_count_follows_its_definition():
    """Pre-activation ResNet-18 vs ResNet-18: no stem BN (-2*64), no BN on the 3 projection
    shortcuts (-2*(128+256+512)), the first block of stages 2-4 normalizes its input
    (64/128/256 ch) instead of its output (128/256/512 ch), and one final BN (+2*512)."""
    plain = abstract_param_count({"name": "resnet", "depth": 18, "stem": "imagenet"})
    pre = abstract_param_count({"name": "resnet", "depth": 18, "stem": "imagenet",
                                "preact": True})
    assert pre - plain == -2 * 64 - 2 * (128 + 256 + 512) - 2 * (64 + 128 + 256) + 2 * 512


def test_compound_scaling():
    assert compound_scaling(0) == {"depth": 1.0, "width": 1.0, "resolution": 224}
    b1 = compound_scaling(1)
    assert b1["resolution"] == 258 and abs(b1["depth"] - 1.2) < 1e-12
    # FLOPs ~ depth * width^2 * resolution^2 ~ 2^phi (alpha beta^2 gamma^2 ~ 1.92)
    assert 1.9 < b1["depth"] * b1["width"] ** 2 * 1.15 ** 2 < 2.0
    wide = abstract_param_count({"name": "efficientnet", "phi": 1.0}, (32, 32, 3), 10)
    base = abstract_param_count({"name": "efficientnet"}, (32, 32, 3), 10)
    assert wide > 1.3 * base


SMALL = [
    ({"name": "lenet5"}, (28, 28, 1)),
    ({"name": "vgg", "stages": ((4,), (8,)), "hidden": (8,), "norm": "batch"}, (8, 8, 1)),
    ({"name": "resnet", "stage_sizes": (1, 1), "block": "basic", "width": 4}, (8, 8, 1)),
    ({"name": "resnet", "stage_sizes": (1, 1), "block": "bottleneck", "width": 4,
      "preact": True, "drop_path_rate": 0.5}, (8, 8, 3)),
    ({"name": "highway", "width": 8, "depth": 3}, (8, 8, 1)),
    ({"name": "densenet", "block_sizes": (2, 2), "growth_rate": 4, "stem_features": 8},
     (8, 8, 1)),
    ({"name": "inception", "modules": ((4, 4, 4, 2, 2, 2), "pool", (4, 4, 4, 2, 2, 2)),
      "stem_features": (4,)}, (8, 8, 1)),
    ({"name": "mobilenet_v1", "width_multiplier": 0.125}, (16, 16, 1)),
    ({"name": "mobilenet_v2", "width_multiplier": 0.25,
      "layers": ((1, 16, 1, 1), (6, 24, 2, 2))}, (16, 16, 1)),
    ({"name": "efficientnet", "width": 0.25, "stages": ((1, 3, 1, 16, 1), (6, 5, 2, 24, 2))},
     (16, 16, 1)),
]


@pytest.mark.parametrize("section,shape", SMALL, ids=[s["name"] for s, _ in SMALL])
def test_forward_train_and_eval(section, shape):
    model = MODELS.build(section, field="model", input_shape=shape, num_classes=5,
                         rngs=nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    x = jax.random.normal(jax.random.key(1), (4, *shape))

    @jax.jit
    def run(params, state, x):
        train_out, new_state = functional.apply(graphdef, params, state, x, train=True,
                                                rng=jax.random.key(2))
        eval_out, same_state = functional.apply(graphdef, params, state, x, train=False)
        return train_out, new_state, eval_out, same_state

    train_out, new_state, eval_out, same_state = run(params, state, x)
    assert train_out.shape == eval_out.shape == (4, 5)
    assert np.isfinite(np.asarray(train_out)).all() and np.isfinite(np.asarray(eval_out)).all()
    for a, b in zip(jax.tree.leaves(same_state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    if jax.tree.leaves(state):  # BatchNorm families: training moves the running statistics
        moved = [not np.allclose(a, b) for a, b in
                 zip(jax.tree.leaves(new_state), jax.tree.leaves(state))]
        assert any(moved)


@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
def test_residual_blocks_start_as_identity(block_cls):
    """The last BN of each branch starts with scale 0, so a block maps x >= 0 to x."""
    channels = 8 * block_cls.expansion
    block = block_cls(channels, 8, 1, norm="batch", preact=False, drop_rate=0.0,
                      rngs=nnx.Rngs(0))
    x = jnp.abs(jax.random.normal(jax.random.key(0), (2, 5, 5, channels)))
    np.testing.assert_allclose(block(x, train=True), x, rtol=1e-6)


def test_highway_layer_is_near_identity_with_negative_gate_bias():
    layer = HighwayLayer(16, gate_bias=-20.0, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (3, 16))
    np.testing.assert_allclose(layer(x), x, atol=1e-6)
    open_layer = HighwayLayer(16, gate_bias=20.0, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(open_layer(x), jax.nn.relu(open_layer.transform(x)), atol=1e-6)


def test_bad_family_options_are_clear_errors():
    with pytest.raises(ValueError, match="model.depth=20"):
        MODELS.build({"name": "resnet", "depth": 20}, field="model", input_shape=(8, 8, 1),
                     num_classes=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="model 'vgg'"):
        MODELS.build({"name": "vgg", "stages": ((4,),) * 5}, field="model",
                     input_shape=(8, 8, 1), num_classes=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="model.modules"):
        MODELS.build({"name": "inception", "modules": ((1, 2),)}, field="model",
                     input_shape=(8, 8, 1), num_classes=2, rngs=nnx.Rngs(0))
