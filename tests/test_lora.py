"""LoRA: merged == unmerged forward, unmerge restores the base, zero B is the base model,
only the adapter trains (base bit-identical), several adapters over one base."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.adapt import lora
from jaxdl.models.mlp import MLP


def _model():
    return functional.split_model(MLP(12, 5, (16, 8), rngs=nnx.Rngs(0)))


def _unmerged_forward(params, adapter, x):
    """Second implementation: x W + b + (alpha/r) (x A) B per layer, never merging."""
    s = adapter.spec.scale

    def dense(p, name, h):
        out = h @ p["kernel"] + p["bias"]
        if name in adapter.weights:
            w = adapter.weights[name]
            out = out + s * ((h @ w["a"]) @ w["b"])
        return out

    h = x
    for i in range(len(params["layers"])):
        h = jax.nn.relu(dense(params["layers"][i], f"layers/{i}/kernel", h))
    return dense(params["head"], "head/kernel", h)


def _random_adapter(params, key, targets="layers/.*/kernel|head/kernel"):
    adapter = lora.init_lora(params, key, targets=targets, rank=3, alpha=6.0)
    b_keys = jax.random.split(jax.random.fold_in(key, 1), len(adapter.weights))
    weights = {n: {"a": w["a"], "b": 0.3 * jax.random.normal(k, w["b"].shape)}
               for (n, w), k in zip(sorted(adapter.weights.items()), b_keys)}
    return lora.LoraAdapter(weights, adapter.spec)


def test_merged_equals_unmerged_and_unmerge_restores_base():
    graphdef, params, state = _model()
    x = jax.random.normal(jax.random.key(1), (7, 12))
    adapter = _random_adapter(params, jax.random.key(2))
    merged_out, _ = jax.jit(lora.lora_apply, static_argnums=0)(graphdef, params, state,
                                                               adapter, x)
    np.testing.assert_allclose(merged_out, jax.jit(_unmerged_forward)(params, adapter, x),
                               rtol=1e-5, atol=1e-5)
    base_out, _ = jax.jit(functional.apply, static_argnums=0)(graphdef, params, state, x)
    assert float(jnp.max(jnp.abs(merged_out - base_out))) > 1e-2  # the adapter does matter
    restored = jax.jit(lambda p, a: lora.unmerge(lora.merge(p, a), a))(params, adapter)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), restored, params)


def test_zero_b_gives_base_outputs_and_targets_select_kernels():
    graphdef, params, state = _model()
    adapter = lora.init_lora(params, jax.random.key(0), targets="layers/1/kernel", rank=2,
                             alpha=4.0)
    assert sorted(adapter.weights) == ["layers/1/kernel"]
    assert adapter.weights["layers/1/kernel"]["a"].shape == (16, 2)
    x = jax.random.normal(jax.random.key(1), (4, 12))
    out, _ = lora.lora_apply(graphdef, params, state, adapter, x)
    np.testing.assert_array_equal(out, functional.apply(graphdef, params, state, x)[0])


def test_only_adapter_trains_base_bit_identical():
    graphdef, params, state = _model()
    adapter = lora.init_lora(params, jax.random.key(3), targets=".*kernel", rank=2, alpha=2.0,
                             dropout=0.1)
    x = jax.random.normal(jax.random.key(4), (32, 12))
    y = jax.random.randint(jax.random.key(5), (32,), 0, 5)
    tx = lora.lora_optimizer(optax.adamw(1e-2, weight_decay=0.1))
    tree = {"base": params, "adapter": adapter}
    opt_state = tx.init(tree)

    @jax.jit
    def step(tree, opt_state, key):
        def loss_fn(tree):
            logits, _ = lora.lora_apply(graphdef, tree["base"], state, tree["adapter"], x,
                                        train=True, rng=key)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(tree)
        updates, opt_state = tx.update(grads, opt_state, tree)
        return optax.apply_updates(tree, updates), opt_state, loss

    losses = []
    for i in range(30):
        tree, opt_state, loss = step(tree, opt_state, jax.random.key(i))
        losses.append(float(loss))
    jax.tree.map(np.testing.assert_array_equal, tree["base"], params)
    assert losses[-1] < 0.8 * losses[0]
    b = tree["adapter"].weights["head/kernel"]["b"]
    assert float(jnp.max(jnp.abs(b))) > 0  # B left zero: the adapter did train


def test_switch_between_named_adapters():
    graphdef, params, state = _model()
    bank = {"first": _random_adapter(params, jax.random.key(6)),
            "second": _random_adapter(params, jax.random.key(7), targets="head/kernel")}
    merged = lora.merge(params, bank["first"])
    switched = lora.switch_adapter(merged, bank, "first", "second")
    expected = lora.merge(params, bank["second"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), switched, expected)
    with pytest.raises(ValueError, match="adapter='third'"):
        lora.switch_adapter(merged, bank, "first", "third")


def test_bad_settings_are_named():
    _, params, _ = _model()
    with pytest.raises(ValueError, match="lora.rank"):
        lora.init_lora(params, jax.random.key(0), targets=".*kernel", rank=0, alpha=1.0)
    with pytest.raises(ValueError, match="lora.targets"):
        lora.init_lora(params, jax.random.key(0), targets="nope", rank=1, alpha=1.0)
    with pytest.raises(ValueError, match="lora.dropout"):
        lora.init_lora(params, jax.random.key(0), targets=".*", rank=1, alpha=1.0, dropout=1.0)
