"""Module hooks that expose the statistics K-FAC needs from the ordinary forward pass.

A curvature layer (e.g. :class:`CurvatureLinear`) behaves exactly like its NNX parent until a
:class:`CurvatureScope` is active. Inside a scope it records its input ``a`` and adds a
*zero perturbation* ``p`` to its pre-activation ``s``: the loss is unchanged, but
``dL/dp = dL/ds``, so differentiating the loss with respect to the perturbations yields each
layer's output gradients from the same backward pass as the parameter gradients. Only public
JAX (``jax.vjp``) and NNX APIs are involved; no jaxpr is re-interpreted.

The objective names the distribution its loss is the negative log-likelihood of with
:func:`register_output` (a no-op outside a scope), which lets the train step draw targets
from the model's own predictive distribution: the K-FAC Fisher is then the true Fisher
(Martens & Grosse, 2015), not the empirical one.

Layers called more than once (tied weights) record one input and one perturbation per call.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

OUTPUT_KINDS = ("bernoulli", "categorical", "gaussian")
_SCOPE: contextvars.ContextVar[CurvatureScope | None] = contextvars.ContextVar(
    "jaxdl_curvature_scope", default=None)


@dataclasses.dataclass
class CurvatureScope:
    """What one traced forward pass records.

    Attributes:
      perturbations: ``{layer_name: [p_call0, p_call1, ...]}``, the zero arrays added to each
        call's pre-activation; ``None`` while discovering their shapes.
      inputs: ``{layer_name: [a_call0, ...]}``, each call's input ``[..., d_in]``.
      kinds: ``{layer_name: "dense" | "conv"}``.
      outputs: ``[(logits, kind)]`` registered by the objective.
    """

    perturbations: dict[str, list[jax.Array]] | None = None
    inputs: dict[str, list[jax.Array]] = dataclasses.field(default_factory=dict)
    shapes: dict[str, list[jax.ShapeDtypeStruct]] = dataclasses.field(default_factory=dict)
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)
    outputs: list[tuple[jax.Array, str]] = dataclasses.field(default_factory=list)

    def record(self, name: str, kind: str, layer_input: jax.Array, pre_activation: jax.Array):
        calls = self.inputs.setdefault(name, [])
        index = len(calls)
        calls.append(layer_input)
        self.kinds[name] = kind
        self.shapes.setdefault(name, []).append(
            jax.ShapeDtypeStruct(pre_activation.shape, pre_activation.dtype))
        if self.perturbations is None:
            return pre_activation
        return pre_activation + self.perturbations[name][index]


@contextlib.contextmanager
def curvature_scope(perturbations: dict[str, list[jax.Array]] | None = None
                    ) -> Iterator[CurvatureScope]:
    """Activate the hooks of every curvature layer called inside the ``with`` block."""
    scope = CurvatureScope(perturbations)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def register_output(logits: jax.Array, kind: str) -> jax.Array:
    """Declare ``logits`` as the parameters of the loss's predictive distribution.

    The objective's loss must be ``mean over the batch of sum over the remaining axes`` of
    the negative log-likelihood: ``bernoulli`` (sigmoid cross-entropy, logits ``[b, ...]``),
    ``categorical`` (softmax cross-entropy, ``[b, ..., classes]``) or ``gaussian`` (half the
    squared error, ``[b, ...]``). Returns ``logits`` unchanged.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"register_output kind={kind!r}: expected one of {OUTPUT_KINDS}.")
    scope = _SCOPE.get()
    if scope is not None:
        scope.outputs.append((logits, kind))
    return logits


def sample_output_cotangent(logits: jax.Array, kind: str, key: jax.Array) -> jax.Array:
    """``d loss / d logits`` per example with targets drawn from the model's distribution.

    Its outer product has expectation equal to the Fisher of the output distribution, so
    pulling it back through the network gives an unbiased Monte-Carlo estimate of the
    Fisher's Kronecker factors (one sample per example).
    """
    logits = logits.astype(jnp.float32)
    if kind == "bernoulli":
        probs = jax.nn.sigmoid(logits)
        return probs - jax.random.bernoulli(key, probs).astype(jnp.float32)
    if kind == "categorical":
        labels = jax.random.categorical(key, logits)
        return jax.nn.softmax(logits) - jax.nn.one_hot(labels, logits.shape[-1])
    return -jax.random.normal(key, logits.shape)


def active_scope(layer: nnx.Module) -> CurvatureScope | None:
    """The scope recording this forward pass (None outside one); inside a scope, checks that
    ``layer`` was named by :func:`name_curvature_layers`."""
    scope = _SCOPE.get()
    if scope is not None and not layer.curvature_name:
        raise ValueError(f"a {type(layer).__name__} has no curvature_name; call "
                         "name_curvature_layers(model) at the end of the model's __init__.")
    return scope


class CurvatureLinear(nnx.Linear):
    """``nnx.Linear`` whose input and output gradient K-FAC can observe.

    ``x: [..., in_features] -> [..., out_features]``. ``curvature_name`` (set by
    :func:`name_curvature_layers`) is the layer's path in the parameter tree, e.g.
    ``"encoder/0"``.
    """

    curvature_name: str = ""

    def __call__(self, x: jax.Array) -> jax.Array:
        y = super().__call__(x)
        scope = active_scope(self)
        if scope is None:
            return y
        return scope.record(self.curvature_name, "dense", x, y)


def name_curvature_layers(model: nnx.Module) -> nnx.Module:
    """Give every curvature layer in ``model`` (any module class with a ``curvature_name``
    attribute: CurvatureLinear/Conv/Embed/LayerNorm) its path (``"a/b/0"``) as its name."""
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and hasattr(type(node), "curvature_name"):
            node.curvature_name = "/".join(str(p) for p in path)
    return model


def path_of(name: str) -> tuple[Any, ...]:
    """``"encoder/0"`` -> ``("encoder", 0)``, the key path in a pure params dict."""
    return tuple(int(p) if p.isdigit() else p for p in name.split("/"))
