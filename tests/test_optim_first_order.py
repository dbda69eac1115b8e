"""Each first-order optimizer's first steps against its textbook update written in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.optim import build_optimizer

RNG = np.random.default_rng(0)
W0 = {"kernel": RNG.normal(size=(2, 3)), "bias": RNG.normal(size=(3,))}
GRADS = [{k: RNG.normal(size=v.shape) for k, v in W0.items()} for _ in range(3)]
LR = 0.05


def run_ours(section):
    tx, _ = build_optimizer({"learning_rate": LR, **section}, 100)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), W0)
    state = tx.init(params)
    for g in GRADS:
        updates, state = tx.update(jax.tree.map(jnp.float32, g), state, params)
        params = optax.apply_updates(params, updates)
    return params


def run_reference(step_fn, init_fn=lambda w: {}):
    """``step_fn(name, w, g, slots, t) -> new w`` per array, t = 1, 2, ..."""
    out = {}
    for name, w in W0.items():
        w, slots = w.copy(), init_fn(w)
        for t, grads in enumerate(GRADS, start=1):
            w = step_fn(name, w, grads[name], slots, t)
        out[name] = w
    return out


def sgd_ref(name, w, g, s, t):
    return w - LR * g


def momentum_ref(name, w, g, s, t, nesterov=False):
    s["v"] = 0.9 * s.get("v", 0.0) + g
    return w - LR * (g + 0.9 * s["v"] if nesterov else s["v"])


def adagrad_ref(name, w, g, s, t):
    s["acc"] = s.get("acc", 0.1) + g * g
    return w - LR * g / np.sqrt(s["acc"] + 1e-7)


def rmsprop_ref(name, w, g, s, t):
    s["nu"] = 0.9 * s.get("nu", 0.0) + 0.1 * g * g
    return w - LR * g / np.sqrt(s["nu"] + 1e-8)


def adam_direction(g, s, t, b1=0.9, b2=0.999, eps=1e-8):
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
    return m_hat / (np.sqrt(v_hat) + eps)


def adam_ref(name, w, g, s, t):
    return w - LR * adam_direction(g, s, t)


def adamw_ref(name, w, g, s, t):
    decay = 0.1 * w if name == "kernel" else 0.0  # biases are not decayed
    return w - LR * (adam_direction(g, s, t) + decay)


def lamb_ref(name, w, g, s, t):
    u = adam_direction(g, s, t, eps=1e-6) + (0.1 * w if name == "kernel" else 0.0)
    ratio = np.linalg.norm(w) / np.linalg.norm(u)
    return w - LR * ratio * u


def lars_ref(name, w, g, s, t):
    if name == "kernel":  # decay and trust ratio only on matrices
        u = g + 0.1 * w
        u = 0.001 * np.linalg.norm(w) / np.linalg.norm(u) * u
    else:
        u = g
    s["v"] = 0.9 * s.get("v", 0.0) + LR * u  # optax's LARS applies the rate before momentum
    return w - s["v"]


def lion_ref(name, w, g, s, t):
    m = s.get("m", 0.0)
    u = np.sign(0.9 * m + 0.1 * g) + (0.1 * w if name == "kernel" else 0.0)
    s["m"] = 0.99 * m + 0.01 * g
    return w - LR * u


CASES = [
    ({"name": "sgd"}, sgd_ref),
    ({"name": "momentum", "momentum": 0.9}, momentum_ref),
    ({"name": "nesterov", "momentum": 0.9},
     lambda *a: momentum_ref(*a, nesterov=True)),
    ({"name": "adagrad"}, adagrad_ref),
    ({"name": "rmsprop"}, rmsprop_ref),
    ({"name": "adam"}, adam_ref),
    ({"name": "adamw", "weight_decay": 0.1}, adamw_ref),
    ({"name": "lamb", "weight_decay": 0.1}, lamb_ref),
    ({"name": "lars", "weight_decay": 0.1}, lars_ref),
    ({"name": "lion", "weight_decay": 0.1}, lion_ref),
]


@pytest.mark.parametrize("section, reference", CASES, ids=[c[0]["name"] for c in CASES])
def test_three_steps_match_the_textbook_update(section, reference):
    ours = run_ours(section)
    expected = run_reference(reference)
    for name in W0:
        np.testing.assert_allclose(ours[name], expected[name], rtol=2e-5, atol=1e-6,
                                   err_msg=f"{section['name']} {name}")


def test_adafactor_first_step_is_a_sign_step_with_factored_state():
    """At step 1 Adafactor's decay is 0, so its second-moment estimate is g^2 itself; for
    a rank-1 g^2 the row/column factorization is exact and the update is ``-lr sign(g)``."""
    rows, cols = np.array([1.0, -2.0, 0.5, 3.0]), np.array([0.3, -1.0, 2.0, 0.7, -0.2])
    g = np.outer(rows, cols).astype(np.float32)
    tx, _ = build_optimizer({"name": "adafactor", "learning_rate": LR,
                             "min_dim_size_to_factor": 2}, 10)
    params = {"w": jnp.zeros((4, 5))}
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
    np.testing.assert_allclose(updates["w"], -LR * np.sign(g), rtol=1e-4)
    # memory: only row and column statistics of the [4, 5] matrix are stored
    sizes = [leaf.size for leaf in jax.tree.leaves(state) if leaf.ndim >= 1]
    assert 20 not in sizes and 4 in sizes and 5 in sizes


def test_clipping_variants():
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0, 12.0])}
    params = jax.tree.map(jnp.zeros_like, grads)

    def first_update(**clip):
        tx, _ = build_optimizer({"name": "sgd", "learning_rate": 1.0, **clip}, 10)
        return tx.update(grads, tx.init(params), params)[0]

    by_layer = first_update(clip_layer_norm=1.0)  # each array to norm 1
    np.testing.assert_allclose(by_layer["a"], [-0.6, -0.8], rtol=1e-6)
    np.testing.assert_allclose(by_layer["b"], [0.0, -1.0], rtol=1e-6)
    global_norm = first_update(clip_norm=6.5)  # ||g|| = 13 -> scale 1/2
    np.testing.assert_allclose(global_norm["b"], [0.0, -6.0], rtol=1e-6)
    by_value = first_update(clip_value=3.5)
    np.testing.assert_allclose(by_value["a"], [-3.0, -3.5])
    np.testing.assert_allclose(by_value["b"], [0.0, -3.5])


def test_gradient_accumulation_averages_micro_batches():
    """Two accumulated micro-batches give one SGD step with their mean gradient."""
    tx, _ = build_optimizer({"name": "sgd", "learning_rate": 0.5, "accumulate_steps": 2}, 10)
    params = {"w": jnp.array([1.0, 2.0])}
    state = tx.init(params)
    g1, g2 = jnp.array([1.0, -1.0]), jnp.array([3.0, 5.0])
    updates, state = tx.update({"w": g1}, state, params)
    np.testing.assert_allclose(updates["w"], 0.0)  # no update until the k-th micro-batch
    updates, state = tx.update({"w": g2}, state, params)
    np.testing.assert_allclose(updates["w"], -0.5 * (g1 + g2) / 2, rtol=1e-6)


def test_bad_shared_options_are_named():
    from jaxdl.registry import ConfigError

    for section, fragment in [({"accumulate_steps": 0}, "optimizer.accumulate_steps=0"),
                              ({"clip_value": -1.0}, "optimizer.clip_value=-1.0"),
                              ({"decay_rate": 2.0, "schedule": "step"}, "optimizer.decay_rate")]:
        with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
            build_optimizer({"name": "sgd", "learning_rate": 0.1, **section}, 10)
