"""Weight initialization: named initializers, re-initialization of a params pytree, LSUV,
zero-init of last layers, and a signal-propagation probe for deep MLPs.

Why initialization matters: in a deep net the forward activations and the backward
gradients are products of one factor per layer, so a per-layer gain slightly below or
above 1 vanishes or explodes geometrically with depth. The standard schemes pick the
weight variance that makes the gain 1 for a given activation:

* LeCun et al. (1998), "Efficient BackProp": ``Var(W) = 1 / fan_in`` (linear/tanh-like).
* Glorot & Bengio (2010): ``Var(W) = 2 / (fan_in + fan_out)``, a compromise between the
  forward (fan_in) and backward (fan_out) conditions, for tanh/sigmoid.
* He et al. (2015): ``Var(W) = 2 / fan_in``: ReLU zeroes half its inputs, halving the
  second moment, so the weights double it back.
* Saxe et al. (2014): orthogonal matrices preserve every vector's norm exactly in linear
  nets (and help in RNNs, where the same matrix is applied at every time step).
* Mishkin & Matas (2016), LSUV: orthogonal start, then rescale each layer so its output
  variance on a real batch is 1 (:func:`lsuv`).
* Goyal et al. (2017): zero the last layer of each residual branch so every block starts
  as the identity (:func:`zero_init_last`).

Biases usually start at 0; a small positive constant (0.01) keeps ReLU units active.
Before these schemes, deep nets were trained by greedy layer-wise pretraining (Hinton et
al., 2006; Bengio et al., 2007); good initialization plus normalization replaced it.

Kernel conventions (fan-in/fan-out as ``jax.nn.initializers`` computes them): Dense
``[in, out]``; Conv ``[h, w, in, out]`` with ``fan_in = h*w*in``, ``fan_out = h*w*out``.
This module must not import ``jaxdl.models`` (the models import it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from jaxdl.registry import ConfigError, Registry

PyTree = Any
Layer = dict[str, jax.Array]  # {"kernel": [d_in, d_out], "bias": [d_out]}

INITIALIZERS = Registry("initializer")
"""Name -> ``jax.nn.initializers`` function ``init(key, shape, dtype) -> array``."""

for _name, _init in {
    "glorot_normal": jinit.glorot_normal(),
    "glorot_uniform": jinit.glorot_uniform(),
    "he_normal": jinit.he_normal(),
    "he_uniform": jinit.he_uniform(),
    "lecun_normal": jinit.lecun_normal(),
    "lecun_uniform": jinit.lecun_uniform(),
    "orthogonal": jinit.orthogonal(),
    "small_normal": jinit.normal(stddev=0.01),  # the classic too-small init: signal vanishes
    "zeros": jinit.zeros,
}.items():
    INITIALIZERS.register(_name)(_init)


def get_initializer(name: str, *, argument: str = "kernel_init") -> Callable[..., jax.Array]:
    """The initializer registered as ``name``; ConfigError naming ``argument`` and the
    registered names otherwise."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ConfigError(f"{argument}={name!r}: expected one of {INITIALIZERS.names()}.")
    return INITIALIZERS.get(name)


def _key_name(key: Any) -> str:
    """The readable part of one pytree path entry (dict key, attribute or index)."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_string(path: Sequence[Any]) -> str:
    """A pytree path as ``"layers/0/kernel"``."""
    return "/".join(_key_name(k) for k in path)


def reinitialize(params: PyTree, key: jax.Array, *, kernel_init: str = "he_normal",
                 bias_init: str = "zeros", bias_value: float = 0.0) -> PyTree:
    """Re-draw every ``kernel`` leaf and reset every ``bias`` leaf; other leaves are kept.

    Args:
      params: pytree of arrays; leaves are recognised by their last path key.
      key: PRNG key; each kernel gets its own split of it.
      kernel_init: a name in :data:`INITIALIZERS`; fans come from the kernel's shape.
      bias_init: ``"zeros"`` or ``"constant"`` (every bias = ``bias_value``, e.g. 0.01
        for ReLU units).
    Returns: a pytree with the structure, shapes and dtypes of ``params``.
    """
    init = get_initializer(kernel_init)
    if bias_init not in ("zeros", "constant"):
        raise ValueError(f"bias_init={bias_init!r}: expected 'zeros' or 'constant'.")
    if bias_init == "zeros" and bias_value != 0.0:
        raise ValueError(f"bias_value={bias_value}: expected 0.0 with bias_init='zeros' "
                         "(use bias_init='constant').")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    new_leaves = []
    for (path, leaf), leaf_key in zip(leaves, keys):
        name = _key_name(path[-1]) if path else ""
        if name == "kernel":
            if leaf.ndim < 2:
                raise ValueError(f"params[{path_string(path)!r}]: expected a kernel with >= 2 "
                                 f"dims ([in, out] or [h, w, in, out]), got {leaf.shape}")
            leaf = init(leaf_key, leaf.shape, leaf.dtype)
        elif name == "bias":
            leaf = jnp.full_like(leaf, bias_value)
        new_leaves.append(leaf)
    return treedef.unflatten(new_leaves)


def zero_init_last(params: PyTree, path_predicate: Callable[[str], bool], *,
                   leaf_names: Sequence[str] = ("kernel", "bias")) -> PyTree:
    """Zero the leaves named in ``leaf_names`` whose path string (``"head/kernel"``)
    satisfies ``path_predicate`` (Goyal et al., 2017: zero the last layer of each residual
    branch, or pass ``leaf_names=("scale",)`` to zero its last BatchNorm gamma).

    ValueError if nothing matches, since a silent no-op usually means a mistyped path.
    """
    matched = []

    def visit(path, leaf):
        if path and _key_name(path[-1]) in leaf_names and path_predicate(path_string(path)):
            matched.append(path_string(path))
            return jnp.zeros_like(leaf)
        return leaf

    out = jax.tree_util.tree_map_with_path(visit, params)
    if not matched:
        raise ValueError(f"path_predicate: matched no leaf named {tuple(leaf_names)}")
    return out


# --- MLP stacks: a list of {"kernel", "bias"} or jaxdl MLP params -------------------------


def mlp_layers(params: Sequence[Layer] | Mapping[str, Any]) -> list[Layer]:
    """The dense layers in order: a list of ``{"kernel", "bias"}`` as is, or jaxdl MLP params
    (``params["layers"][0..n-1]`` then ``params["head"]``)."""
    if isinstance(params, Mapping) and "layers" in params and "head" in params:
        hidden = params["layers"]
        hidden = [hidden[k] for k in sorted(hidden)] if isinstance(hidden, Mapping) else hidden
        layers = [*hidden, params["head"]]
    elif isinstance(params, Sequence):
        layers = list(params)
    else:
        raise ValueError("layers: expected a list of {'kernel', 'bias'} dicts or jaxdl MLP "
                         f"params with 'layers' and 'head', got {type(params).__name__}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Mapping) or not {"kernel", "bias"} <= set(layer):
            raise ValueError(f"layers[{i}]: expected a dict with 'kernel' and 'bias'")
    return layers


def _like(params: Any, layers: list[Layer]) -> Any:
    """Put ``layers`` back into the container structure of ``params`` (inverse of
    :func:`mlp_layers`)."""
    if isinstance(params, Mapping) and "layers" in params and "head" in params:
        hidden = params["layers"]
        if isinstance(hidden, Mapping):
            hidden = dict(zip(sorted(hidden), layers[:-1]))
        else:
            hidden = type(hidden)(layers[:-1])
        return {**params, "layers": hidden, "head": layers[-1]}
    return layers


def _activation(activation: str | Callable[[jax.Array], jax.Array]) -> Callable:
    if callable(activation):
        return activation
    if isinstance(activation, str) and hasattr(jax.nn, activation):
        return getattr(jax.nn, activation)
    raise ValueError(f"activation={activation!r}: expected a callable or a jax.nn name")


def deep_mlp_layers(key: jax.Array, depth: int, width: int, in_dim: int, init_name: str,
                    dtype: Any = jnp.float32) -> list[Layer]:
    """``depth`` dense layers ``[in_dim, width]`` then ``[width, width]``, kernels from
    :data:`INITIALIZERS` [``init_name``], zero biases."""
    if depth < 1 or width < 1 or in_dim < 1:
        raise ValueError(f"depth, width, in_dim: expected >= 1, got {depth}, {width}, {in_dim}")
    init = get_initializer(init_name, argument="init_name")
    first_key, rest_key = jax.random.split(key)
    kernels = [init(first_key, (in_dim, width), dtype)]
    if depth > 1:  # one vmapped draw for the square layers: far fewer ops than a loop
        rest = jax.vmap(lambda k: init(k, (width, width), dtype))(
            jax.random.split(rest_key, depth - 1))
        kernels += list(rest)
    return [{"kernel": k, "bias": jnp.zeros((width,), dtype)} for k in kernels]


def lsuv(apply_layer: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]],
         layers: Sequence[Any], x: jax.Array, *, tol: float = 0.02,
         max_iters: int = 10) -> list[Any]:
    """Layer-Sequential Unit-Variance scaling (Mishkin & Matas, 2016) of any layer stack.

    Args:
      apply_layer: ``(layer, h) -> (pre_activation, next_h)``; ``layer`` is a dict with a
        ``"kernel"`` (Dense, Conv, ...), ``h`` the previous layer's output.
      layers: the layers in order (kernels typically orthogonal already, Saxe et al., 2014).
      x: the batch, ``[batch, ...]`` as the first layer expects it.
      tol, max_iters: rescale layer ``l``'s kernel by ``1/sqrt(Var(pre_activation))`` until
        ``|Var - 1| < tol`` or ``max_iters`` rescalings; with zero biases one suffices.
    Returns: the layers with rescaled kernels. Pure and jittable (``lax.while_loop``).
    """
    if tol <= 0 or max_iters < 1:
        raise ValueError(f"tol, max_iters: expected > 0 and >= 1, got {tol}, {max_iters}")
    h, out = x, []
    for layer in layers:
        def variance(kernel, layer=layer, h=h):
            return jnp.var(apply_layer({**layer, "kernel": kernel}, h)[0])

        def cond(carry):
            _, it, var = carry
            return (jnp.abs(var - 1.0) >= tol) & (it < max_iters)

        def body(carry, variance=variance):
            kernel, it, var = carry
            # a dead layer (variance 0) cannot be rescaled to 1; the floor avoids inf
            kernel = kernel / jnp.sqrt(jnp.maximum(var, 1e-30))
            return kernel, it + 1, variance(kernel)

        kernel, _, _ = jax.lax.while_loop(
            cond, body, (layer["kernel"], 0, variance(layer["kernel"])))
        layer = {**layer, "kernel": kernel}
        _, h = apply_layer(layer, h)
        out.append(layer)
    return out


def lsuv_mlp(params: Sequence[Layer] | Mapping[str, Any], activation: str | Callable,
             x: jax.Array, key: jax.Array | None = None, *, tol: float = 0.02,
             max_iters: int = 10) -> Any:
    """LSUV for an MLP: ``z_l = h_{l-1} @ kernel_l + bias_l``, ``h_l = activation(z_l)``.

    Args:
      params: a list of ``{"kernel": [d_in, d_out], "bias": [d_out]}`` or jaxdl MLP params
        (``MODELS.build({"name": "mlp", ...})`` split by ``functional.split_model``).
      activation: callable or ``jax.nn`` name, applied between layers.
      x: ``[batch, ...]``, flattened to ``[batch, d_in]``.
      key: if given, kernels are first redrawn orthogonal (the LSUV recipe); if None the
        current kernels are only rescaled.
    Returns: params of the same structure; each layer's pre-activation variance on ``x`` is
    within ``tol`` of 1 (unless ``max_iters`` ran out).
    """
    act, layers = _activation(activation), mlp_layers(params)
    if key is not None:
        ortho = get_initializer("orthogonal")
        layers = [{**lay, "kernel": ortho(k, lay["kernel"].shape, lay["kernel"].dtype)}
                  for k, lay in zip(jax.random.split(key, len(layers)), layers)]

    def apply_layer(layer, h):
        z = h @ layer["kernel"] + layer["bias"]
        return z, act(z)

    x = jnp.reshape(x, (x.shape[0], -1))
    return _like(params, lsuv(apply_layer, layers, x, tol=tol, max_iters=max_iters))


class SignalReport(NamedTuple):
    """Per-layer statistics, each ``[num_layers]``, variances over batch and units."""

    pre_activation_var: jax.Array  # Var(z_l)
    post_activation_var: jax.Array  # Var(h_l)
    post_activation_second_moment: jax.Array  # E[h_l^2] (the quantity He et al. preserve)
    gradient_var: jax.Array  # Var(dL/dz_l), L = sum(output * fixed N(0,1) projection)


def signal_propagation(params: Sequence[Layer] | Mapping[str, Any],
                       activation: str | Callable, x: jax.Array, *,
                       key: jax.Array | None = None,
                       activate_last: bool | None = None) -> SignalReport:
    """Forward and backward signal statistics of an MLP in one ``jax.grad`` pass.

    Zero "probe" arrays are added to every pre-activation ``z_l``; the gradient of the loss
    with respect to probe ``l`` is exactly ``dL/dz_l``. The loss ``sum(output * P)`` with a
    fixed ``P ~ N(0, 1)`` (from ``key``, default ``PRNGKey(0)``) seeds the backward pass
    with unit-variance cotangents, so ``gradient_var`` measures only the backward gain.

    Args:
      params, activation: as in :func:`lsuv_mlp`; x: ``[batch, ...]``.
      activate_last: apply ``activation`` after the last layer; default True for a list of
        layers (a uniform stack, as :func:`deep_mlp_layers` builds) and False for jaxdl MLP
        params (their head is linear).
    """
    act, layers = _activation(activation), mlp_layers(params)
    if activate_last is None:
        activate_last = isinstance(params, Sequence)
    x = jnp.reshape(x, (x.shape[0], -1))
    key = jax.random.PRNGKey(0) if key is None else key
    widths = [layer["kernel"].shape[-1] for layer in layers]
    projection = jax.random.normal(key, (x.shape[0], widths[-1]), x.dtype)
    probes = [jnp.zeros((x.shape[0], w), x.dtype) for w in widths]

    def loss(probes):
        h, pres, posts = x, [], []
        for i, (layer, probe) in enumerate(zip(layers, probes)):
            z = h @ layer["kernel"] + layer["bias"] + probe
            h = act(z) if activate_last or i < len(layers) - 1 else z
            pres.append(z)
            posts.append(h)
        return jnp.sum(h * projection), (pres, posts)

    grads, (pres, posts) = jax.grad(loss, has_aux=True)(probes)
    return SignalReport(
        pre_activation_var=jnp.stack([jnp.var(z) for z in pres]),
        post_activation_var=jnp.stack([jnp.var(h) for h in posts]),
        post_activation_second_moment=jnp.stack([jnp.mean(h * h) for h in posts]),
        gradient_var=jnp.stack([jnp.var(g) for g in grads]),
    )
