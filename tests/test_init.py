"""Initialization: initializer statistics against their formulas, orthogonality,
re-initialization, zero-init, the MLP options, LSUV, and signal propagation at depth 50."""

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl import init as I
from jaxdl.models import MODELS

FAN_IN, FAN_OUT = 256, 1024  # non-square, so fan_in / fan_avg / fan_out rules differ
EXPECTED_STD = {
    "glorot_normal": np.sqrt(2.0 / (FAN_IN + FAN_OUT)),
    "glorot_uniform": np.sqrt(2.0 / (FAN_IN + FAN_OUT)),
    "he_normal": np.sqrt(2.0 / FAN_IN),
    "he_uniform": np.sqrt(2.0 / FAN_IN),
    "lecun_normal": np.sqrt(1.0 / FAN_IN),
    "lecun_uniform": np.sqrt(1.0 / FAN_IN),
    "small_normal": 0.01,
}


@functools.cache
def build_mlp(seed=0, **options):
    """(graphdef, params, state) of a 64 -> 32 -> 32 -> 10 MLP (cached: arrays are
    immutable, and eager nnx initialization is the slow part)."""
    section = {"name": "mlp", "hidden": (32, 32), **options}
    model = MODELS.build(section, field="model", input_shape=(64,), num_classes=10,
                         rngs=nnx.Rngs(seed))
    return functional.split_model(model)


@pytest.mark.parametrize("name", sorted(EXPECTED_STD))
def test_initializer_std_matches_formula(name):
    w = np.asarray(I.get_initializer(name)(jax.random.PRNGKey(0), (FAN_IN, FAN_OUT)))
    std = EXPECTED_STD[name]
    assert abs(w.std() / std - 1) < 0.02, (w.std(), std)  # 262k samples: ~0.2% noise
    assert abs(w.mean()) < 0.01 * std
    if name.endswith("uniform"):  # U[-limit, limit] with limit = sqrt(3) * std
        assert np.abs(w).max() <= np.sqrt(3) * std * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * np.sqrt(3) * std


def test_registry_names_and_errors():
    assert set(I.INITIALIZERS.names()) == {*EXPECTED_STD, "orthogonal", "zeros"}
    assert not np.any(I.get_initializer("zeros")(jax.random.PRNGKey(0), (3, 4)))
    with pytest.raises(ValueError, match=r"kernel_init='xavier': expected one of \['glorot"):
        I.get_initializer("xavier")


@pytest.mark.parametrize("shape", [(256, 128), (64, 64), (3, 3, 8, 16)])
def test_orthogonal_columns_are_orthonormal(shape):
    """Saxe et al. (2014): W^T W = I for [in, out] with in >= out (conv: [h*w*in, out])."""
    w = I.get_initializer("orthogonal")(jax.random.PRNGKey(1), shape, jnp.float32)
    m = np.asarray(w, np.float64).reshape(-1, shape[-1])
    np.testing.assert_allclose(m.T @ m, np.eye(shape[-1]), atol=2e-5)


def test_reinitialize_redraws_kernels_and_sets_biases():
    _, params, _ = build_mlp()
    params = {**params, "conv": {"kernel": jnp.ones((3, 3, 16, 32)), "bias": jnp.ones(32),
                                 "scale": jnp.full(32, 2.0)}}
    fn = partial(I.reinitialize, kernel_init="he_normal", bias_init="constant", bias_value=0.01)
    new = jax.jit(fn)(params, jax.random.PRNGKey(3))  # pure, so it runs under jit
    assert jax.tree.structure(new) == jax.tree.structure(params)
    for (path, old), leaf in zip(jax.tree_util.tree_leaves_with_path(params),
                                 jax.tree.leaves(new)):
        name = I.path_string(path)
        assert leaf.shape == old.shape and leaf.dtype == old.dtype, name
        if name.endswith("bias"):
            np.testing.assert_array_equal(leaf, np.full(old.shape, 0.01, np.float32))
        elif name.endswith("kernel"):
            assert not np.allclose(leaf, old), name
    np.testing.assert_array_equal(new["conv"]["scale"], params["conv"]["scale"])  # untouched
    conv = np.asarray(new["conv"]["kernel"])  # fan_in = 3*3*16 = 144
    assert abs(conv.std() / np.sqrt(2.0 / 144) - 1) < 0.05
    with pytest.raises(ValueError, match="bias_init='ones': expected 'zeros' or 'constant'"):
        I.reinitialize(params, jax.random.PRNGKey(0), bias_init="ones")
    with pytest.raises(ValueError, match="bias_value=0.01: expected 0.0 with bias_init='zeros'"):
        I.reinitialize(params, jax.random.PRNGKey(0), bias_value=0.01)


def test_zero_init_last_zeroes_exactly_the_matched_leaves():
    _, params, _ = build_mlp()
    params = jax.tree.map(lambda a: a + 1.0, params)  # biases nonzero too
    new = I.zero_init_last(params, lambda path: path.startswith("head/"))
    for (path, old), leaf in zip(jax.tree_util.tree_leaves_with_path(params),
                                 jax.tree.leaves(new)):
        if I.path_string(path).startswith("head/"):
            assert not np.any(leaf), path
        else:
            np.testing.assert_array_equal(leaf, old)
    only_kernel = I.zero_init_last(params, lambda p: p == "layers/1/kernel")
    assert not np.any(only_kernel["layers"][1]["kernel"])
    np.testing.assert_array_equal(only_kernel["layers"][1]["bias"], params["layers"][1]["bias"])
    with pytest.raises(ValueError, match="path_predicate: matched no leaf"):
        I.zero_init_last(params, lambda p: p.startswith("heads/"))


def test_mlp_default_init_is_unchanged_and_options_apply():
    """The default reproduces nnx.Linear's own initialization bit for bit."""
    _, params, _ = build_mlp(seed=5)
    rngs = nnx.Rngs(5)
    reference = [nnx.Linear(a, b, rngs=rngs) for a, b in [(64, 32), (32, 32), (32, 10)]]
    ours = [params["layers"][0], params["layers"][1], params["head"]]
    for layer, ref in zip(ours, reference):
        np.testing.assert_array_equal(layer["kernel"], ref.kernel.value)
        np.testing.assert_array_equal(layer["bias"], ref.bias.value)

    _, params, _ = build_mlp(kernel_init="he_normal", bias_init=0.01)
    layers = [params["layers"][0], params["layers"][1], params["head"]]
    # pool all 3392 kernel entries, each divided by its layer's He std sqrt(2 / fan_in)
    unit = np.concatenate([np.ravel(lay["kernel"]) / np.sqrt(2 / lay["kernel"].shape[0])
                           for lay in layers])
    assert abs(unit.std() - 1) < 0.05  # sampling noise ~1.2%
    for lay in layers:
        np.testing.assert_array_equal(lay["bias"], np.full(lay["bias"].shape, 0.01, np.float32))
    with pytest.raises(ValueError, match="model.kernel_init='he': expected one of"):
        build_mlp(kernel_init="he")
    with pytest.raises(ValueError, match="model.bias_init='zeros': expected a number"):
        build_mlp(bias_init="zeros")


def random_mlp(sizes, batch, weight_std, bias_std, seed=0):
    """float32 layers {"kernel", "bias"} and a batch x: [batch, sizes[0]], drawn in numpy
    (small tests need no jax initializer, whose eager ops compile per shape)."""
    rng = np.random.default_rng(seed)
    layers = [{"kernel": jnp.asarray(rng.normal(0, weight_std, (a, b)), jnp.float32),
               "bias": jnp.asarray(rng.normal(0, bias_std, b), jnp.float32)}
              for a, b in zip(sizes[:-1], sizes[1:])]
    return layers, jnp.asarray(rng.normal(size=(batch, sizes[0])), jnp.float32)


def numpy_pre_activations(layers, activation, x):
    """An independent float64 forward pass: every layer's pre-activation."""
    h, pres = np.asarray(x, np.float64).reshape(len(x), -1), []
    for layer in layers:
        z = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        pres.append(z)
        h = activation(z)
    return pres


def test_lsuv_gives_unit_variance_per_layer():
    """Mishkin & Matas (2016). Random biases make the fixed point need several rescalings;
    kernels start from small_normal, far from unit variance, and are only rescaled (no
    key: no orthogonal redraw), so each is a positive multiple of its start."""
    layers, x = random_mlp([16, 32, 32, 32, 32, 32], batch=64, weight_std=0.01, bias_std=0.4)
    before = [z.var() for z in numpy_pre_activations(layers, np.tanh, x)]
    assert max(abs(v - 1) for v in before) > 0.5

    out = jax.jit(partial(I.lsuv_mlp, activation="tanh", tol=0.02, max_iters=10))(layers, x=x)
    for i, z in enumerate(numpy_pre_activations(out, np.tanh, x)):
        assert abs(z.var() - 1) < 0.02, (i, z.var())
    for lay, new in zip(layers, out):
        np.testing.assert_array_equal(new["bias"], lay["bias"])
        ratio = np.asarray(new["kernel"]) / np.asarray(lay["kernel"])
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-4)
        assert ratio.flat[0] > 1
    with pytest.raises(ValueError, match="tol, max_iters: expected > 0 and >= 1"):
        I.lsuv_mlp(layers, "tanh", x, tol=0.0)


def test_lsuv_on_jaxdl_mlp_params():
    graphdef, params, state = build_mlp(activation="relu")
    x = jax.random.uniform(jax.random.PRNGKey(0), (128, 64))  # inputs >= 0, like pixels
    new = jax.jit(I.lsuv_mlp, static_argnums=1)(params, "relu", x, jax.random.PRNGKey(1))
    assert jax.tree.structure(new) == jax.tree.structure(params)
    layers = [new["layers"][0], new["layers"][1], new["head"]]
    pres = numpy_pre_activations(layers, lambda z: np.maximum(z, 0), x)
    for i, z in enumerate(pres):
        assert abs(z.var() - 1) < 0.02, (i, z.var())
    logits, _ = functional.apply(graphdef, new, state, x)  # the model sees the new params
    np.testing.assert_allclose(logits, pres[-1], rtol=1e-4, atol=1e-4)
    for lay in layers:  # orthogonal start (Saxe et al., 2014), then a scalar rescaling
        k = np.asarray(lay["kernel"], np.float64)
        gram = k.T @ k if k.shape[0] >= k.shape[1] else k @ k.T
        np.testing.assert_allclose(gram / gram[0, 0], np.eye(len(gram)), atol=1e-4)
    with pytest.raises(ValueError, match="layers: expected a list of"):
        I.lsuv_mlp({"kernel": 1}, "relu", x)


def test_generic_lsuv_on_a_conv_stack():
    """lsuv() takes any layer: two SAME convolutions, kernels [3, 3, c_in, c_out]."""
    rng = np.random.default_rng(0)
    layers = [{"kernel": jnp.asarray(rng.normal(0, 0.01, (3, 3, a, b)), jnp.float32),
               "bias": jnp.zeros(b)} for a, b in [(1, 4), (4, 4)]]
    x = jnp.asarray(rng.normal(size=(8, 6, 6, 1)), jnp.float32)

    def conv(layer, h):
        z = jax.lax.conv_general_dilated(h, layer["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        z = z + layer["bias"]
        return z, jax.nn.relu(z)

    out = jax.jit(partial(I.lsuv, conv))(layers, x)
    h = x
    for layer in out:
        z, h = conv(layer, h)
        assert abs(float(jnp.var(z)) - 1) < 0.02


def test_signal_probe_gradients_match_manual_backprop():
    """The probe trick: the grad w.r.t. a zero array added to z_l is dL/dz_l; checked
    against backprop written out by hand in float64 numpy (textbook: delta_l =
    (delta_{l+1} W_{l+1}^T) * f'(z_l), with L = sum(output * P), so delta_L = P)."""
    layers, x = random_mlp([5, 8, 8, 8], batch=6, weight_std=0.5, bias_std=0.1)
    run = jax.jit(partial(I.signal_propagation, activation=jnp.tanh, activate_last=False))
    report = run(layers, x=x, key=jax.random.PRNGKey(2))
    proj = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (6, 8)), np.float64)
    z = numpy_pre_activations(layers, np.tanh, x)
    kernels = [np.asarray(lay["kernel"], np.float64) for lay in layers]
    deltas = [proj]  # dL/dz_2: the last layer is linear here
    for i in (1, 0):
        deltas.insert(0, (deltas[0] @ kernels[i + 1].T) * (1 - np.tanh(z[i]) ** 2))
    np.testing.assert_allclose(report.gradient_var, [d.var() for d in deltas], rtol=1e-4)
    np.testing.assert_allclose(report.pre_activation_var, [v.var() for v in z], rtol=1e-4)
    posts = [np.tanh(z[0]), np.tanh(z[1]), z[2]]
    np.testing.assert_allclose(report.post_activation_second_moment,
                               [np.mean(h ** 2) for h in posts], rtol=1e-4)
    np.testing.assert_allclose(report.post_activation_var, [h.var() for h in posts], rtol=1e-4)


DEPTH, WIDTH, BATCH, NETS = 50, 256, 64, 4


@functools.cache
def signal_fn(activation: str):
    return jax.jit(lambda layers, x: I.signal_propagation(layers, activation, x))


@functools.cache
def deep_nets(init_name: str) -> list:
    return [I.deep_mlp_layers(k, DEPTH, WIDTH, WIDTH, init_name)
            for k in jax.random.split(jax.random.PRNGKey(0), NETS)]


@functools.cache
def deep_reports(init_name: str, activation: str) -> I.SignalReport:
    """Signal statistics of NETS independent depth-50 width-256 nets, fields [NETS, DEPTH]
    (one compiled program per activation, reused for every net)."""
    x = jax.random.normal(jax.random.PRNGKey(100), (BATCH, WIDTH))
    reports = [signal_fn(activation)(net, x) for net in deep_nets(init_name)]
    return jax.tree.map(lambda *r: np.stack(r), *reports)


def test_tanh_glorot_decays_polynomially_small_normal_collapses():
    """tanh with Var(W) fan_in = 1 (Glorot on square layers) sits at the edge of chaos:
    q_{l+1} ~ q_l - 2 q_l^2, so q_L ~ 1 / (1/q_1 + 2(L-1)) (measured 0.99 -> ~0.01 over 50
    layers: polynomial, not exponential). small_normal multiplies q by 256 * 1e-4 per layer
    and underflows. Gradients mirror this backwards."""
    glorot, small = deep_reports("glorot_normal", "tanh"), deep_reports("small_normal", "tanh")
    q = glorot.pre_activation_var
    mean_field = 1.0 / (1.0 / q[:, :1] + 2.0 * np.arange(DEPTH))
    np.testing.assert_allclose(q, mean_field, rtol=0.35)
    assert np.all(q[:, -1] / q[:, 0] > 1 / 300) and np.all(glorot.post_activation_var > 0.003)
    small_q = small.pre_activation_var
    assert np.all(small_q[:, -1] < 1e-6 * small_q[:, 0])
    np.testing.assert_allclose(small_q[:, 1] / small_q[:, 0], 256 * 1e-4, rtol=0.1)
    assert np.all(glorot.gradient_var[:, 0] / glorot.gradient_var[:, -1] > 1 / 300)
    assert np.all(small.gradient_var[:, 0] < 1e-6 * small.gradient_var[:, -1])  # vanishes


def test_relu_he_preserves_second_moment_glorot_halves_it():
    """He et al. (2015): E[relu(z)^2] = Var(z)/2, so Var(W) = 2/fan_in keeps E[h^2]
    constant in expectation over weight draws (a martingale). A single width-256 net still
    wanders: log E[h^2] gains variance ~5/width per layer, so after 50 layers one net ends
    anywhere in ~[0.1, 3.3] x its start (measured over 16 nets); the mean over NETS nets is
    flat (max/min 1.8-2.5 over depth in 4 groups of 4). Glorot on square layers (Var(W) =
    1/fan_in) halves E[h^2] every layer: 2^-49 ~ 2e-15."""
    he, glorot = deep_reports("he_normal", "relu"), deep_reports("glorot_normal", "relu")
    m = he.post_activation_second_moment
    he_mean = m.mean(axis=0)
    assert he_mean.max() / he_mean.min() < 4, he_mean
    gain = (m[:, -1] / m[:, 0]) ** (1 / (DEPTH - 1))  # geometric mean gain per layer
    assert np.all(np.abs(gain - 1) < 0.06), gain
    g = glorot.post_activation_second_moment
    np.testing.assert_allclose((g[:, -1] / g[:, 0]) ** (1 / (DEPTH - 1)), 0.5, rtol=0.1)
    assert np.all(g[:, -1] < 1e-10 * g[:, 0])
    assert np.all(glorot.gradient_var[:, 0] < 1e-10 * glorot.gradient_var[:, -1])
    he_grad = he.gradient_var.mean(axis=0)
    assert he_grad.max() / he_grad.min() < 3, he_grad
