"""Per-layer gradient flow: gradient, parameter and activation statistics, input to output.

Backpropagation multiplies local Jacobians layer by layer (Rumelhart et al., 1986), so
gradient norms that shrink or grow geometrically with depth are the signature of
vanishing / exploding gradients (Hochreiter, 1991; Bengio et al., 1994; Glorot & Bengio,
2010). This module measures, for every parameterised layer of a jaxdl NNX model, the
gradient norm, the parameter norm, the output's RMS / mean / std and optionally the
update-to-parameter ratio, in execution order.

How activations are captured: inside the pure function the model is merged from
``(graphdef, params, state)`` -- a fresh module object owned by this trace -- and each
layer that owns ``nnx.Param`` attributes directly (``nnx.Linear``, ``nnx.Conv``, norms,
embeddings, ...) has its *instance* class swapped for a subclass whose ``__call__``
records the output. Nothing global is patched (``nnx.capture(method_outputs=...)``
patches the classes themselves and reports by path, not call order), the model's code is
unchanged, and the recorded values are returned as arrays, so the whole report is
``jax.jit``-able with ``graphdef`` (and ``loss_fn``) static.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

PyTree = Any
OutputLossFn = Callable[[Any, PyTree], jax.Array]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayerFlow:
    """Statistics of one layer (scalars; a jit-able pytree with ``name`` static).

    ``name`` is the module path (``"layers/0"``), with ``"#k"`` appended for the ``k``-th
    repeated call of a shared layer. ``activation_*`` describe the layer module's output
    (for Linear / Conv: the pre-activation), over batch and features together.
    ``update_to_param`` is ``||update|| / ||param||`` (None when no update was given).
    ``dead_unit_fraction``: the fraction of output units (last axis) that are <= 0 for
    every example and position of the batch -- for a layer followed by ReLU, units that
    pass no signal and get no gradient ("dead ReLUs").
    """

    name: str = dataclasses.field(metadata={"static": True})
    param_grad_norm: jax.Array
    param_norm: jax.Array
    activation_norm: jax.Array
    activation_mean: jax.Array
    activation_std: jax.Array
    update_to_param: jax.Array | None = None
    dead_unit_fraction: jax.Array | None = None
    activation_histogram: jax.Array | None = None  # [bins] counts on activation_range
    activation_range: jax.Array | None = None  # [2] min and max of the activation


def softmax_cross_entropy(logits: jax.Array, batch: PyTree) -> jax.Array:
    """Default loss: mean cross-entropy of ``logits [batch, ..., classes]`` against the
    integer labels ``batch["y"] [batch, ...]``."""
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["y"]
    ).mean()


def _own_param_names(module: nnx.Module) -> tuple[str, ...]:
    """Attributes of ``module`` that are ``nnx.Param`` (not those of its sub-modules)."""
    return tuple(sorted(k for k, v in vars(module).items() if isinstance(v, nnx.Param)))


_RECORDING_CLASSES: dict[type, type] = {}


def _recording_class(cls: type) -> type:
    """A subclass of ``cls`` whose ``__call__`` appends ``(name, output)`` to a recorder."""
    if cls not in _RECORDING_CLASSES:
        def __call__(self, *args, **kwargs):
            output = cls.__call__(self, *args, **kwargs)
            self._jaxdl_flow_recorder.append((self._jaxdl_flow_name, output))
            return output

        _RECORDING_CLASSES[cls] = type(cls.__name__, (cls,), {"__call__": __call__})
    return _RECORDING_CLASSES[cls]


def _instrument(model: nnx.Module) -> tuple[list, dict[str, tuple]]:
    """Make every directly-parameterised layer of ``model`` record its outputs.

    ``model`` must be a module this trace owns (just merged); returns the recorder list
    and ``{layer name: (path, own param names)}``.
    """
    recorder: list = []
    layers = {}
    for path, module in nnx.iter_modules(model):
        names = _own_param_names(module)
        if not names or not callable(module):
            continue
        name = "/".join(str(p) for p in path) or "<model>"
        layers[name] = (path, names)
        module.__class__ = _recording_class(type(module))
        # object.__setattr__: bookkeeping, not part of the module's NNX state.
        object.__setattr__(module, "_jaxdl_flow_recorder", recorder)
        object.__setattr__(module, "_jaxdl_flow_name", name)
    return recorder, layers


def _subtree(tree: PyTree, path: tuple, names: tuple[str, ...]) -> dict:
    node = tree
    for key in path:
        node = node[key]
    return {n: node[n] for n in names}


def _norm(tree: PyTree) -> jax.Array:
    return optax.global_norm(jax.tree.map(lambda a: a.astype(jnp.float32), tree))


def gradient_flow(
    graphdef: nnx.GraphDef,
    params: PyTree,
    model_state: PyTree,
    batch: PyTree,
    loss_fn: OutputLossFn | None = None,
    *,
    update: PyTree | None = None,
    train: bool = False,
    rng: jax.Array | None = None,
    histogram_bins: int = 0,
) -> list[LayerFlow]:
    """Gradient-flow report for one batch, ordered by execution (input to output).

    Args:
      graphdef, params, model_state: the parts from ``jaxdl.functional.split_model``.
      batch: dict with ``"x"`` (the model input ``[batch, ...]``) and whatever ``loss_fn``
        reads (the default reads integer labels ``"y"``).
      loss_fn: ``(model_outputs, batch) -> scalar``; default
        :func:`softmax_cross_entropy`.
      update: optional pytree like ``params`` (e.g. an optimiser's update) for the
        update-to-parameter ratio.
      train, rng: passed to the model call as in ``jaxdl.functional.apply``.
      histogram_bins: if > 0, also a histogram of each activation over its own range.

    Returns:
      list of :class:`LayerFlow`, one per call of a layer that owns ``nnx.Param``s;
      layers never called are left out. Every number is a scalar array, so the function
      can be wrapped in ``jax.jit`` (``graphdef`` and ``loss_fn`` static).
    """
    if not isinstance(batch, dict) or "x" not in batch:
        raise ValueError("batch: expected a dict with the model input under 'x'.")
    loss_fn = softmax_cross_entropy if loss_fn is None else loss_fn
    layer_info: dict[str, tuple] = {}
    call_names: list[str] = []

    def loss_and_outputs(p: PyTree) -> tuple[jax.Array, list[jax.Array]]:
        model = nnx.merge(graphdef, p, model_state)
        recorder, layers = _instrument(model)
        rngs = nnx.Rngs(rng) if rng is not None else None
        outputs = model(batch["x"], train=train, rngs=rngs)
        # Layer names are static: collected while this function is traced (once, below).
        layer_info.update(layers)
        call_names[:] = [name for name, _ in recorder]
        return loss_fn(outputs, batch), [out for _, out in recorder]

    grads, activations = jax.grad(loss_and_outputs, has_aux=True)(params)

    report, seen = [], {}
    for name, act in zip(call_names, activations):
        path, names = layer_info[name]
        seen[name] = seen.get(name, -1) + 1
        layer_params = _subtree(params, path, names)
        param_norm = _norm(layer_params)
        act = act.astype(jnp.float32)
        ratio = None
        if update is not None:
            ratio = _norm(_subtree(update, path, names)) / param_norm
        report.append(LayerFlow(
            name=name if seen[name] == 0 else f"{name}#{seen[name]}",
            param_grad_norm=_norm(_subtree(grads, path, names)),
            param_norm=param_norm,
            activation_norm=jnp.sqrt(jnp.mean(jnp.square(act))),
            activation_mean=jnp.mean(act),
            activation_std=jnp.std(act),
            update_to_param=ratio,
            dead_unit_fraction=jnp.mean(jnp.all(
                act.reshape(-1, act.shape[-1]) <= 0, axis=0).astype(jnp.float32))
            if act.ndim >= 1 else None,
            **(_histogram(act, histogram_bins) if histogram_bins else {}),
        ))
    return report


def _histogram(act: jax.Array, bins: int) -> dict[str, jax.Array]:
    low, high = jnp.min(act), jnp.max(act)
    width = jnp.maximum(high - low, 1e-12)
    index = jnp.clip(((act - low) / width * bins).astype(jnp.int32), 0, bins - 1)
    counts = jnp.zeros(bins, jnp.float32).at[index.reshape(-1)].add(1.0)
    return {"activation_histogram": counts, "activation_range": jnp.stack([low, high])}


def format_gradient_flow(report: list[LayerFlow]) -> str:
    """A fixed-width table of a gradient-flow report (concrete values, not under jit)."""
    header = ("layer", "|grad|", "|param|", "|grad|/|param|", "act rms", "act mean",
              "act std", "|update|/|param|")
    rows = []
    for layer in report:
        grad, param = float(layer.param_grad_norm), float(layer.param_norm)
        rows.append((
            layer.name, f"{grad:.3e}", f"{param:.3e}",
            f"{grad / param:.3e}" if param > 0 else "inf",
            f"{float(layer.activation_norm):.3e}", f"{float(layer.activation_mean):+.3e}",
            f"{float(layer.activation_std):.3e}",
            "-" if layer.update_to_param is None else f"{float(layer.update_to_param):.3e}",
        ))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(header), line(tuple("-" * w for w in widths)),
                      *(line(r) for r in rows)])


def diagnose(
    report: list[LayerFlow], *, vanishing_below: float = 1e-3, exploding_above: float = 1e3
) -> str:
    """One-paragraph verdict on a report.

    Flags non-finite gradients, and the ratio ``r = |grad first layer| / |grad last
    layer|``: ``r < vanishing_below`` is vanishing (early layers barely learn),
    ``r > exploding_above`` exploding (Bengio et al., 1994; Glorot & Bengio, 2010).
    """
    if not report:
        raise ValueError("report: expected at least one LayerFlow, got an empty report.")
    if not 0 < vanishing_below < exploding_above:
        raise ValueError(
            f"vanishing_below={vanishing_below}, exploding_above={exploding_above}: "
            "expected 0 < vanishing_below < exploding_above."
        )
    norms = [float(layer.param_grad_norm) for layer in report]
    bad = [layer.name for layer, n in zip(report, norms) if not math.isfinite(n)]
    if bad:
        return f"non-finite gradients (NaN/inf) in layers: {', '.join(bad)}."
    first, last = norms[0], norms[-1]
    ratio = first / last if last > 0 else (math.inf if first > 0 else 1.0)
    summary = (f"|grad| first layer {report[0].name} = {first:.3e}, last layer "
               f"{report[-1].name} = {last:.3e}, ratio {ratio:.3e}")
    if ratio < vanishing_below:
        return (f"VANISHING gradients: {summary} < {vanishing_below:g}. Consider ReLU-family "
                "activations, He/Glorot initialisation, normalisation or residual paths.")
    if ratio > exploding_above:
        return (f"EXPLODING gradients: {summary} > {exploding_above:g}. Consider smaller "
                "initial weights, normalisation or gradient clipping.")
    return f"gradient flow OK: {summary}."
