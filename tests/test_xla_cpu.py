"""jaxdl.xla_cpu: which steps compile with Eigen convolutions, and that the values agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional, xla_cpu
from jaxdl.config import base_config
from jaxdl.models import MODELS
from jaxdl.models.norms import WeightNormConv
from jaxdl.registry import ConfigError
from jaxdl.train import build_experiment


def ynn_convolutions(hlo: str) -> int:
    """How many YNNPACK fusions of compiled HLO text contain a convolution."""
    count = 0
    for line in hlo.splitlines():
        if "__ynn_fusion" in line and "calls=%" in line:
            name = line.split("calls=%")[1].split(",")[0].split(" ")[0]
            start = hlo.index(f"%{name} (")
            count += "convolution(" in hlo[start:hlo.index("\n}", start)]
    return count


def _abstract(section, input_shape):
    return functional.abstract_model(lambda rngs: MODELS.build(
        section, field="model", input_shape=input_shape, num_classes=10, rngs=rngs))


def test_convolutional_models_get_the_eigen_options_and_others_none():
    cnn = _abstract({"name": "cnn", "features": (4,), "hidden": 8}, (8, 8, 1))
    mlp = _abstract({"name": "mlp", "hidden": (8,)}, (16,))
    assert xla_cpu.has_convolutions(cnn) and not xla_cpu.has_convolutions(mlp)
    assert xla_cpu.compiler_options(cnn, backend="cpu") == xla_cpu.CONVOLUTION_OPTIONS
    assert xla_cpu.compiler_options(mlp, backend="cpu") is None
    assert xla_cpu.compiler_options(cnn, "ynnpack", backend="cpu") is None
    assert xla_cpu.compiler_options(cnn, backend="gpu") is None
    with pytest.raises(ValueError, match="xla_cpu_convolutions='fast'"):
        xla_cpu.compiler_options(cnn, "fast")


def test_a_module_that_calls_lax_conv_itself_is_detected():
    class Wrapper(nnx.Module):
        def __init__(self):
            self.inner = nnx.List([WeightNormConv(2, 3, rngs=nnx.Rngs(0))])

    assert xla_cpu.has_convolutions(Wrapper())


def test_eigen_convolutions_give_the_same_values_and_gradients():
    """Forward, input and weight gradients of a strided and a stride-1 convolution with and
    without the options agree to float32 rounding (two implementations of one function)."""
    x = jax.random.normal(jax.random.key(0), (4, 9, 9, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 5)) * 0.3
    w2 = jax.random.normal(jax.random.key(2), (2, 2, 5, 4)) * 0.3

    def loss(x, w, w2):
        h = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jax.lax.conv_general_dilated(jnp.tanh(h), w2, (2, 2), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.sin(h))

    f = jax.value_and_grad(loss, (0, 1, 2))
    default = jax.jit(f)(x, w, w2)
    eigen_jit = jax.jit(f, compiler_options=xla_cpu.CONVOLUTION_OPTIONS)
    text = eigen_jit.lower(x, w, w2).compile().as_text()
    assert "convolution(" in text and ynn_convolutions(text) == 0
    eigen = eigen_jit(x, w, w2)
    for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(eigen)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_the_options_move_convolutions_out_of_ynnpack_and_keep_its_reductions():
    """At a size where XLA's default hands the convolutions to YNNPACK (the small CNN's second
    layer), the options send them to Eigen while the reduction stays a YNNPACK fusion."""
    x = jax.ShapeDtypeStruct((128, 14, 14, 32), jnp.float32)
    w = jax.ShapeDtypeStruct((3, 3, 32, 64), jnp.float32)
    b = jax.ShapeDtypeStruct((64,), jnp.float32)

    def loss(x, w, b):  # the bias gradient is a reduction over batch and space
        h = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jax.nn.relu(h + b))

    f = jax.grad(loss, (0, 1, 2))
    default = jax.jit(f).lower(x, w, b).compile().as_text()
    eigen = jax.jit(f, compiler_options=xla_cpu.CONVOLUTION_OPTIONS).lower(x, w, b).compile()
    assert ynn_convolutions(default) == 3  # forward, input and weight gradient
    assert ynn_convolutions(eigen.as_text()) == 0
    assert eigen.as_text().count("convolution(") >= 3 and "__ynn_fusion" in eigen.as_text()


def _config(model):
    config = base_config()
    config.model = model
    config.mesh.data = 1
    config.batch_size = 8
    config.eval_batch_size = 8
    return config


def test_the_trainer_compiles_convolutional_steps_with_the_options():
    experiment = build_experiment(_config({"name": "cnn", "features": (4,), "hidden": 8}))
    state = experiment.init_state()
    batch = {k: v[:8] for k, v in experiment.dataset.train.items()}
    text = experiment.train_step.lower(state, batch).compile().as_text()
    # Convolutions through Eigen; YNNPACK keeps the reductions (the bias gradients) and dots.
    assert "convolution(" in text and ynn_convolutions(text) == 0 and "__ynn_fusion" in text
    config = _config({"name": "cnn", "features": (4,), "hidden": 8})
    config.xla_cpu_convolutions = "ynnpack"
    default = build_experiment(config).train_step.lower(state, batch).compile().as_text()
    assert default != text  # compiled without the options (at this size XLA's cost model
    # keeps the convolutions out of YNNPACK anyway: see the test above for one it fuses)


def test_bad_mode_is_a_config_error_naming_the_field():
    config = _config({"name": "mlp", "hidden": (8,)})
    config.xla_cpu_convolutions = "onednn"
    with pytest.raises(ConfigError, match="xla_cpu_convolutions='onednn'.*eigen"):
        build_experiment(config)
