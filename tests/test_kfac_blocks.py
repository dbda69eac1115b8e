"""K-FAC blocks beyond dense: conv (KFC), embedding, scale-and-shift, EKFAC, tied uses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.config import base_config
from jaxdl.optim.kfac import (
    CurvatureBatchNorm,
    CurvatureConv,
    CurvatureEmbed,
    CurvatureLayerNorm,
    CurvatureLinear,
    curvature_scope,
    kfac,
    name_curvature_layers,
    value_grad_and_curvature,
)
from jaxdl.optim.kfac.blocks import as_matrix, find_blocks
from jaxdl.optim.kfac.layers import conv_kernel_matrix
from jaxdl.train import train_and_evaluate


def empirical_problem(model, batch):
    """(params, state, loss_fn, per_example_grads) for softmax cross-entropy with no
    registered output: the statistics are then the empirical Fisher's."""
    graphdef, params, state = functional.split_model(model)

    def loss_fn(p, model_state, b, key):
        logits, _ = functional.apply(graphdef, p, model_state, b["x"])
        value = optax.softmax_cross_entropy_with_integer_labels(logits, b["y"]).mean()
        return value, ({}, model_state)

    def per_example(p):
        return jax.vmap(jax.grad(lambda q, x, y: loss_fn(q, state, {"x": x[None],
                                                                     "y": y[None]}, None)[0]),
                        (None, 0, 0))(p, batch["x"], batch["y"])

    return params, state, loss_fn, per_example


def stats_of(loss_fn, params, state, batch):
    """``(value, grads, stats)`` of :func:`value_grad_and_curvature`, compiled once."""
    return jax.jit(lambda p, b: value_grad_and_curvature(
        loss_fn, p, state, b, None, jax.random.key(0)))(params, batch)


class ConvNet(nnx.Module):
    def __init__(self, padding, rngs):
        self.conv = CurvatureConv(2, 3, (3, 3), padding=padding, rngs=rngs)
        self.out = CurvatureLinear(3, 4, rngs=rngs)
        name_curvature_layers(self)

    def __call__(self, x, *, train=False, rngs=None):
        h = jnp.tanh(self.conv(x))
        return self.out(h.mean(axis=(1, 2)))


def _patches_numpy(x, k=3, pad=1):
    """Explicit 'SAME' 3x3 patches ``[B, H, W, C*9]`` ordered (channel, dy, dx)."""
    b, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((b, h, w, c, k, k))
    for i in range(h):
        for j in range(w):
            out[:, i, j] = xp[:, i:i + k, j:j + k, :].transpose(0, 3, 1, 2)
    return out.reshape(b, h, w, c * k * k)


def test_conv_factors_one_position_are_exact_and_kfc_normalisation():
    """(1) One example, 1x1 output: A (x) G equals the exact (empirical) Fisher block
    vec(dW) vec(dW)^T. (2) 3 examples, 4x4 'SAME' output: A is the mean over examples and
    positions of [patch, 1][patch, 1]^T (patches extracted by hand), G the sum over positions
    of the output gradients' outer products, averaged over examples."""
    rng = np.random.default_rng(0)
    model = ConvNet("VALID", nnx.Rngs(0))
    batch = {"x": jnp.asarray(rng.normal(size=(1, 3, 3, 2)), jnp.float32),
             "y": jnp.asarray([2])}
    params, state, loss_fn, _ = empirical_problem(model, batch)
    _, grads, stats = stats_of(loss_fn, params, state, batch)
    block = find_blocks(params)["conv"]
    v = np.asarray(as_matrix(block, grads["conv"]), np.float64).reshape(-1)
    np.testing.assert_allclose(np.kron(stats["conv"]["A"], stats["conv"]["G"]),
                               np.outer(v, v), rtol=1e-4, atol=1e-9)

    model = ConvNet("SAME", nnx.Rngs(1))
    x = rng.normal(size=(3, 4, 4, 2))
    batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray([0, 1, 3])}
    params, state, loss_fn, _ = empirical_problem(model, batch)
    _, grads, stats = stats_of(loss_fn, params, state, batch)
    patches = _patches_numpy(x).reshape(3, 16, 18)
    # the layer's matrix view: patches @ kernel matrix + bias is the convolution
    conv_out = model.conv(batch["x"])
    np.testing.assert_allclose(patches.reshape(48, 18) @ np.asarray(
        conv_kernel_matrix(params["conv"]["kernel"])) + np.asarray(params["conv"]["bias"]),
        np.asarray(conv_out).reshape(48, 3), rtol=1e-4, atol=1e-5)
    a = np.concatenate([patches, np.ones((3, 16, 1))], -1).reshape(48, 19)
    np.testing.assert_allclose(stats["conv"]["A"], a.T @ a / (3 * 16), rtol=1e-4, atol=1e-6)

    def loss_of_conv_output(s):  # output gradients of the per-example losses
        logits = model.out(jnp.tanh(s).mean(axis=(1, 2)))
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).sum()

    g = np.asarray(jax.grad(loss_of_conv_output)(conv_out), np.float64).reshape(48, 3)
    np.testing.assert_allclose(stats["conv"]["G"], g.T @ g / 3, rtol=1e-4, atol=1e-8)


class EmbedNet(nnx.Module):
    """ids [B, 2, T] -> both halves through one embedding (tied uses) -> sum -> logits;
    or the same with the one-hot dense layer ``one_hot(ids) @ E`` (``dense=True``)."""

    def __init__(self, dense, rngs):
        self.dense = dense
        if dense:
            self.embed = CurvatureLinear(5, 3, use_bias=False, rngs=rngs)
        else:
            self.embed = CurvatureEmbed(5, 3, rngs=rngs)
        self.out = CurvatureLinear(3, 4, rngs=rngs)
        name_curvature_layers(self)

    def __call__(self, ids, *, train=False, rngs=None):
        def embed(i):
            return self.embed(jax.nn.one_hot(i, 5)) if self.dense else self.embed(i)
        h = jnp.tanh(embed(ids[:, 0]) + 0.5 * embed(ids[:, 1]))
        return self.out(h.sum(1))


def test_embedding_equals_the_one_hot_dense_layer_with_tied_uses():
    """The embedding's diagonal A (token counts) and G equal the explicit one-hot dense
    layer's factors (whose A is diagonal), both used twice (tied), and so do the K-FAC
    updates."""
    rng = np.random.default_rng(2)
    batch = {"x": jnp.asarray(rng.integers(0, 4, size=(6, 2, 3))),  # token 4 never occurs
             "y": jnp.asarray(rng.integers(0, 4, size=(6,)))}
    results = []
    for dense in (False, True):
        model = EmbedNet(dense, nnx.Rngs(0))
        if dense:  # the same weights
            model.embed.kernel.value = jnp.asarray(results[0][0]["embed"]["embedding"])
        params, state, loss_fn, _ = empirical_problem(model, batch)
        _, grads, stats = stats_of(loss_fn, params, state, batch)
        tx = kfac(0.1, damping=1e-2, momentum=0.0)
        updates, _ = jax.jit(lambda g, p, c, tx=tx: tx.update(g, tx.init(p), p,
                                                                curvature=c))(grads, params, stats)
        results.append((params, stats["embed"], updates["embed"]))
    (_, embed_stats, embed_update), (_, dense_stats, dense_update) = results
    np.testing.assert_allclose(np.diag(dense_stats["A"]), embed_stats["A"], rtol=1e-6)
    np.testing.assert_allclose(dense_stats["A"], np.diag(np.diag(dense_stats["A"])), atol=0)
    ids = np.asarray(batch["x"])
    np.testing.assert_allclose(embed_stats["A"], np.bincount(ids.ravel(), minlength=5) /
                               (6 * 2), rtol=1e-6)
    np.testing.assert_allclose(embed_stats["G"], dense_stats["G"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(embed_update["embedding"], dense_update["kernel"], rtol=1e-4,
                               atol=1e-7)


class NormNet(nnx.Module):
    def __init__(self, rngs):
        self.inp = CurvatureLinear(3, 4, rngs=rngs)
        self.norm = CurvatureLayerNorm(4, rngs=rngs, scale_init=nnx.initializers.normal(1.0),
                                       bias_init=nnx.initializers.normal(1.0))
        self.out = CurvatureLinear(4, 3, rngs=rngs)
        name_curvature_layers(self)

    def __call__(self, x, *, train=False, rngs=None):
        return self.out(jnp.tanh(self.norm(self.inp(x))).sum(1))


def test_scale_shift_is_the_exact_diagonal_fisher():
    """LayerNorm scale/shift statistics equal the exact diagonal empirical Fisher (mean of
    squared per-example gradients over 2 positions per example); the hooked forward equals
    nnx.LayerNorm's."""
    rng = np.random.default_rng(3)
    batch = {"x": jnp.asarray(rng.normal(size=(5, 2, 3)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, 3, size=(5,)))}
    model = NormNet(nnx.Rngs(0))
    h = model.inp(batch["x"])
    with curvature_scope():
        hooked = model.norm(h)
    np.testing.assert_allclose(hooked, model.norm(h), rtol=1e-5, atol=1e-5)
    params, state, loss_fn, per_example = empirical_problem(model, batch)
    _, _, stats = stats_of(loss_fn, params, state, batch)
    every = jax.jit(per_example)(params)
    grads = every["norm"]
    np.testing.assert_allclose(stats["norm"]["scale"], np.mean(np.square(grads["scale"]), 0),
                               rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(stats["norm"]["shift"], np.mean(np.square(grads["bias"]), 0),
                               rtol=1e-4, atol=1e-9)
    tx = kfac(1.0, damping=0.5, momentum=0.0)
    mean_grads = jax.tree.map(lambda g: g.mean(0), every)
    updates, _ = tx.update(mean_grads, tx.init(params), params, curvature=stats)
    np.testing.assert_allclose(updates["norm"]["scale"], -mean_grads["norm"]["scale"] /
                               (stats["norm"]["scale"] + 0.5), rtol=1e-5)


def test_ekfac_scales_are_the_exact_diagonal_in_the_kronecker_eigenbasis():
    """ema=0, one batch: EKFAC's S for a conv (16 positions per example) and a dense layer
    equals mean_n (Q_A^T dW_n Q_G)^2 from per-example gradients by vmap."""
    rng = np.random.default_rng(4)
    batch = {"x": jnp.asarray(rng.normal(size=(4, 4, 4, 2)), jnp.float32),
             "y": jnp.asarray([0, 1, 2, 3])}
    model = ConvNet("SAME", nnx.Rngs(0))
    params, state, loss_fn, per_example = empirical_problem(model, batch)
    _, grads, stats = stats_of(loss_fn, params, state, batch)
    tx = kfac(0.1, ema=0.0, momentum=0.0, ekfac=True)
    _, opt_state = jax.jit(lambda g, p, c: tx.update(g, tx.init(p), p, curvature=c))(
        grads, params, stats)
    examples = jax.jit(per_example)(params)
    for name in ("conv", "out"):
        block = find_blocks(params)[name]
        v = np.asarray(jax.vmap(lambda g, b=block: as_matrix(b, g))(examples[name]),
                       np.float64)
        got = opt_state.inverses[name]
        # the basis: orthonormal eigenvectors of A and G (unique only up to sign and
        # rotations within repeated eigenvalues, so S is checked in the optimizer's basis)
        for q, factor in ((got["QA"], stats[name]["A"]), (got["QG"], stats[name]["G"])):
            q, factor = np.asarray(q, np.float64), np.asarray(factor, np.float64)
            np.testing.assert_allclose(q.T @ q, np.eye(len(q)), atol=1e-4)
            rotated = q.T @ factor @ q
            np.testing.assert_allclose(rotated, np.diag(np.diag(rotated)),
                                       atol=1e-4 * np.abs(factor).max())
        qa, qg = np.asarray(got["QA"], np.float64), np.asarray(got["QG"], np.float64)
        want = np.mean(np.square(qa.T @ v @ qg), 0)
        np.testing.assert_allclose(got["S"], want, rtol=2e-3, atol=1e-6 * want.max())


@pytest.mark.parametrize("ekfac", [False, True])
def test_cnn_trains_with_kfac_and_ekfac(tmp_path, ekfac):
    """The registered CNN (CurvatureConv + CurvatureLinear) trained by K-FAC / EKFAC on
    digits: the train loss falls to under a third of its start in 60 steps."""
    config = base_config()
    config.model = {"name": "cnn", "features": (8,), "hidden": 32}
    config.optimizer = {"name": "kfac", "learning_rate": 0.05, "damping": 0.1,
                        "inverse_every": 5, "schedule": "constant", "ekfac": ekfac,
                        "adapt_damping": True}
    config.batch_size = 32
    config.num_steps = 60
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 0
    config.mesh.data = 1
    config.progress_bar = False
    config.plots = False
    result = train_and_evaluate(config, tmp_path)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] / 3, losses
    assert result.eval_metrics["accuracy"] > 0.8, result.eval_metrics
    assert set(result.state.opt_state.factors) >= {"convs/0", "dense", "head"}


class BatchNormNet(nnx.Module):
    def __init__(self, rngs):
        self.inp = CurvatureLinear(3, 4, rngs=rngs)
        self.norm = CurvatureBatchNorm(4, rngs=rngs, scale_init=nnx.initializers.normal(1.0),
                                       bias_init=nnx.initializers.normal(1.0))
        self.out = CurvatureLinear(4, 3, rngs=rngs)
        name_curvature_layers(self)

    def __call__(self, x, *, train=False, rngs=None):
        return self.out(jnp.tanh(self.norm(self.inp(x))))


def test_batch_norm_scale_shift_statistics():
    """BatchNorm (training mode): the hooked forward equals nnx.BatchNorm's, and the
    statistics are mean_n (g_n x_hat_n)^2 and mean_n g_n^2 with x_hat from the batch
    statistics (by hand) and g the per-example output gradients."""
    rng = np.random.default_rng(5)
    batch = {"x": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, 3, size=(6,)))}
    model = BatchNormNet(nnx.Rngs(0))
    h = model.inp(batch["x"])
    plain = model.norm(h)
    with curvature_scope():
        hooked = model.norm(h)
    np.testing.assert_allclose(hooked, plain, rtol=1e-5, atol=1e-5)
    params, state, loss_fn, _ = empirical_problem(model, batch)
    _, _, stats = stats_of(loss_fn, params, state, batch)
    h64 = np.asarray(h, np.float64)
    x_hat = (h64 - h64.mean(0)) / np.sqrt(h64.var(0) + model.norm.epsilon)
    scale, shift = (np.asarray(params["norm"][k], np.float64) for k in ("scale", "bias"))

    def loss_of_norm_output(s):  # per-example losses summed: per-example output gradients
        logits = model.out(jnp.tanh(s))
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).sum()

    g = np.asarray(jax.grad(loss_of_norm_output)(jnp.asarray(x_hat * scale + shift,
                                                               jnp.float32)), np.float64)
    np.testing.assert_allclose(stats["norm"]["scale"], np.mean(np.square(g * x_hat), 0),
                               rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(stats["norm"]["shift"], np.mean(np.square(g), 0),
                               rtol=1e-4, atol=1e-9)
