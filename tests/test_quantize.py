"""Weight-only int8 / int4 quantization (issue 8): error bound, packing, matmul, memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.inference import quantize as qz
from jaxdl.models.transformer_models import GPT


@pytest.mark.parametrize("bits,group", [(8, None), (4, 32), (4, 8)])
def test_error_within_half_a_step_and_integers_match_numpy(bits, group):
    w = np.asarray(jax.random.normal(jax.random.key(0), (64, 24))) * \
        np.linspace(0.01, 3.0, 24)[None]  # very different column ranges
    qt = qz.quantize(w, bits, group or 64)
    w64 = w.astype(np.float64)
    if bits == 8:
        scale = np.abs(w64).max(0) / 127
        scale_full = np.broadcast_to(scale, w.shape)
    else:
        scale = np.abs(w64.reshape(64 // group, group, 24)).max(1) / 7
        scale_full = np.repeat(scale, group, axis=0)
    np.testing.assert_allclose(np.asarray(qt.scale).reshape(scale.shape), scale, rtol=1e-6)
    np.testing.assert_array_equal(qz.integers(qt), np.round(w64 / scale_full))
    error = np.abs(w64 - np.asarray(qz.dequantize(qt), np.float64))
    assert np.all(error <= scale_full / 2 * (1 + 1e-5) + 1e-7)
    # memory: int8 holds 1 byte / weight, int4 half a byte, plus float32 scales
    n_scales = 24 if bits == 8 else 24 * 64 // group
    assert qt.nbytes == 64 * 24 * bits // 8 + 4 * n_scales


@pytest.mark.parametrize("bits", [8, 4])
def test_qmatmul_equals_dequantized_matmul(bits):
    w = jax.random.normal(jax.random.key(1), (64, 16))
    x = jax.random.normal(jax.random.key(2), (5, 64))
    qt = qz.quantize(w, bits, 16)
    reference = np.asarray(x, np.float64) @ np.asarray(qz.dequantize(qt), np.float64)
    np.testing.assert_allclose(jax.jit(qz.qmatmul)(x, qt), reference, rtol=1e-4, atol=1e-4)


def test_int4_packs_two_per_byte_with_sign():
    q = jnp.array([[-7, 3], [7, -1], [0, -8], [5, 2]], jnp.int8)  # [in=4, out=2]
    packed = qz._pack_int4(q)
    assert packed.shape == (2, 2) and packed.dtype == jnp.int8
    np.testing.assert_array_equal(qz._unpack_int4(packed), q)


def test_quantized_gpt_logits_close_to_float():
    model = GPT(65, 32, d_model=64, num_layers=2, num_heads=4, rngs=nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    x = jax.random.randint(jax.random.key(3), (4, 32), 0, 65)

    logits = jax.jit(lambda params: nnx.merge(graphdef, params, state)(x))
    reference = logits(params)
    errors, sizes = {}, {}
    for bits in (8, 4):
        qparams = qz.quantize_params(params, bits, group_size=32)
        kernels = [leaf for leaf in jax.tree.leaves(
            qparams, is_leaf=lambda a: isinstance(a, qz.QuantizedTensor))
            if isinstance(leaf, qz.QuantizedTensor)]
        assert len(kernels) == 2 * 4 + 1  # qkv, out, mlp_in, mlp_out per layer + head
        quantized = logits(qz.dequantize_params(qparams))
        errors[bits] = float(jnp.abs(quantized - reference).max())
        agree = float(jnp.mean(quantized.argmax(-1) == reference.argmax(-1)))
        assert agree > (0.95 if bits == 8 else 0.6), (bits, agree)
        sizes[bits] = qz.param_bytes(qparams)
    spread = float(reference.std())
    assert errors[8] < 0.1 * spread, errors
    assert errors[8] < errors[4] / 4, errors  # 16x coarser steps (groups help a bit)
    assert sizes[4] < sizes[8] < 0.5 * qz.param_bytes(params)


def test_bad_quantization_options():
    with pytest.raises(ValueError, match="quantize.bits"):
        qz.quantize(jnp.ones((4, 4)), bits=3)
    with pytest.raises(ValueError, match="quantize.group_size"):
        qz.quantize(jnp.ones((48, 4)), bits=4, group_size=32)
