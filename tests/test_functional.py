"""The NNX <-> pure-function boundary."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl import functional, parallel
from jaxdl.models import MODELS


class NormedNet(nnx.Module):
    """Linear -> BatchNorm -> Dropout: has params, batch statistics and randomness."""

    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(3, 4, rngs=rngs)
        self.norm = nnx.BatchNorm(4, momentum=0.5, rngs=rngs)
        self.drop = nnx.Dropout(0.5)

    def __call__(self, x, *, train=False, rngs=None):
        h = self.norm(self.linear(x), use_running_average=not train)
        return self.drop(h, deterministic=not train, rngs=rngs)


def test_split_gives_plain_dicts_and_merge_inverts():
    model = NormedNet(nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    assert isinstance(params, dict) and set(params) == {"linear", "norm"}
    assert set(state["norm"]) == {"mean", "var"}
    rebuilt = functional.merge_model(graphdef, params, state)
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(rebuilt(x), model(x))


def test_apply_updates_batch_stats_purely():
    model = NormedNet(nnx.Rngs(0))
    graphdef, params, state = functional.split_model(model)
    x = jax.random.normal(jax.random.key(1), (16, 3)) * 3.0 + 1.0
    apply = jax.jit(functional.apply, static_argnums=0, static_argnames="train")
    _, new_state = apply(graphdef, params, state, x, train=True, rng=jax.random.key(2))
    # Closed form: running mean <- momentum * old + (1 - momentum) * batch mean.
    hidden = x @ params["linear"]["kernel"] + params["linear"]["bias"]
    np.testing.assert_allclose(new_state["norm"]["mean"], 0.5 * hidden.mean(0), rtol=1e-5)
    np.testing.assert_array_equal(state["norm"]["mean"], np.zeros(4))  # input untouched
    # Eval mode is deterministic and does not change the state.
    y1, s1 = apply(graphdef, params, new_state, x, train=False)
    y2, _ = apply(graphdef, params, new_state, x, train=False)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(s1["norm"]["mean"], new_state["norm"]["mean"])


def test_dropout_depends_only_on_the_key():
    graphdef, params, state = functional.split_model(NormedNet(nnx.Rngs(0)))
    x = jnp.ones((8, 3))
    run = lambda k: functional.apply(graphdef, params, state, x, train=True, rng=k)[0]
    np.testing.assert_array_equal(run(jax.random.key(5)), run(jax.random.key(5)))
    assert not np.array_equal(run(jax.random.key(5)), run(jax.random.key(6)))


def test_init_model_places_params_and_matches_eager_init():
    mesh = parallel.make_mesh(8)
    factory = lambda rngs: MODELS.build({"name": "mlp", "hidden": (5,)}, field="model",
                                        input_shape=(4,), num_classes=3, rngs=rngs)
    key = jax.random.key(3)
    graphdef, params, _ = functional.init_model(factory, key,
                                                sharding=parallel.replicated(mesh))
    kernel = params["layers"][0]["kernel"]
    assert kernel.sharding.is_fully_replicated and len(kernel.sharding.device_set) == 8
    _, eager, _ = functional.split_model(factory(nnx.Rngs(key)))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(eager)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert functional.count_params(params) == 4 * 5 + 5 + 5 * 3 + 3
