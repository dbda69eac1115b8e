"""Kronecker-factor statistics from one forward pass and two backward sweeps.

:func:`value_grad_and_curvature` runs the objective's loss once with the curvature hooks of
:mod:`jaxdl.optim.kfac.tags` switched on, then pulls back two cotangents through the same
``jax.vjp``: the loss's (the parameter gradients) and, at the registered model output,
``d loss / d logits`` for targets sampled from the model (the output gradients whose
second moments are the Fisher's ``G`` factors; Martens & Grosse, 2015). The second sweep
needs no weight gradients, so XLA drops them.

For a dense layer ``s = a W + b`` called on a batch of ``B`` examples (any extra leading
axes are folded into the rows), with ``a~ = [a, 1]`` when the layer has a bias:

    A = sum_rows a~^T a~ / B        [d_in (+1), d_in (+1)]
    G = sum_rows g^T g / B          [d_out, d_out]

A layer used ``K`` times (tied weights) sums its uses: ``A = mean_k A_k``, ``G = sum_k G_k``,
so ``A (x) G`` is about ``sum_k A_k (x) G_k`` when the uses are alike. Conv, embedding and
scale-and-shift blocks: :mod:`jaxdl.optim.kfac.factors`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxdl.optim.kfac.factors import embed_factors, kronecker_factors, scale_shift_factors
from jaxdl.optim.kfac.tags import curvature_scope, path_of, sample_output_cotangent

Stats = dict[str, dict[str, jax.Array]]


def _lookup(params: Any, name: str) -> Any:
    node = params
    for key in path_of(name):
        node = node[key]
    return node


def subsample_batch(batch: Any, every: int) -> Any:
    """Every ``every``-th example of each array in ``batch`` (strided, so a batch sharded
    over devices keeps an equal share on each)."""
    return batch if every == 1 else jax.tree.map(lambda x: x[::every], batch)


def value_grad_and_curvature(
    loss_fn: Callable[..., Any], params: Any, model_state: Any, batch: Any, rng: jax.Array,
    sample_key: jax.Array, subsample: int = 1,
) -> tuple[tuple[jax.Array, Any], Any, Stats]:
    """``((loss, aux), grads, stats)`` with ``stats = {layer_name: {"A", "G", ...}}``
    (per layer kind, :func:`block_statistics`).

    ``loss_fn(params, model_state, batch, rng) -> (loss, aux)`` as in the train step. If the
    objective registers no output, the empirical Fisher is used (the real targets' output
    gradients times the batch size, for a mean loss). With ``subsample = k > 1`` the
    statistics come from a separate pass over every ``k``-th example (about ``k`` times
    cheaper); the gradient still comes from the whole batch.
    """
    found: dict[str, Any] = {}

    def discover(p):
        with curvature_scope() as scope:
            out = loss_fn(p, model_state, batch, rng)
        found.update(shapes=scope.shapes, kinds=dict(scope.kinds),
                     outputs=[kind for _, kind in scope.outputs])
        return out

    jax.eval_shape(discover, params)
    if not found["shapes"]:  # no curvature layers (e.g. Newton on a plain model): no stats
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, model_state, batch, rng)
        return (loss, aux), grads, {}
    zeros = {name: [jnp.zeros(s.shape, s.dtype) for s in shapes]
             for name, shapes in found["shapes"].items()}

    def forward(p, perturbations, data=batch):
        with curvature_scope(perturbations) as scope:
            loss, aux = loss_fn(p, model_state, data, rng)
        return (loss, [o for o, _ in scope.outputs]), (aux, scope.inputs)

    def forward_shapes(p, data):
        with curvature_scope() as scope:
            loss_fn(p, model_state, data, rng)
        return scope.shapes

    if subsample > 1:  # gradient from the whole batch, curvature from every k-th example
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, model_state, batch, rng)
        part = subsample_batch(batch, subsample)
        sub_shapes = jax.eval_shape(lambda p: forward_shapes(p, part), params)
        zeros = {name: [jnp.zeros(s.shape, s.dtype) for s in shapes]
                 for name, shapes in sub_shapes.items()}
        (_, outputs), pullback, (_, inputs) = jax.vjp(
            lambda p, z: forward(p, z, part), params, zeros, has_aux=True)
        out_grads = None
    else:
        (loss, outputs), pullback, (aux, inputs) = jax.vjp(forward, params, zeros,
                                                           has_aux=True)
        grads, out_grads = pullback((jnp.ones_like(loss),
                                     [jnp.zeros_like(o) for o in outputs]))
    batch_size = next(iter(inputs.values()))[0].shape[0]
    if outputs:
        keys = jax.random.split(sample_key, len(outputs))
        sampled = [sample_output_cotangent(o, kind, k).astype(o.dtype)
                   for o, kind, k in zip(outputs, found["outputs"], keys)]
        _, out_grads = pullback((jnp.zeros_like(loss), sampled))
    elif out_grads is None:
        raise ValueError("curvature_subsample > 1 needs an output registered with "
                         "jaxdl.optim.kfac.register_output (the true Fisher).")
    else:
        out_grads = jax.tree.map(lambda g: g * batch_size, out_grads)
    stats = {name: block_statistics(found["kinds"][name], _lookup(params, name), calls,
                                    out_grads[name], batch_size)
             for name, calls in inputs.items()}
    return (loss, aux), grads, stats


def block_statistics(kind: str, layer_params: Any, inputs: list[jax.Array],
                     out_grads: list[jax.Array], batch_size: int) -> dict[str, jax.Array]:
    """The statistics of one curvature layer of ``kind`` (see
    :mod:`jaxdl.optim.kfac.factors`)."""
    if kind in ("dense", "conv"):
        return kronecker_factors(inputs, out_grads, "bias" in layer_params, batch_size,
                                 positions_mean=kind == "conv")
    if kind == "embed":
        return embed_factors(inputs, out_grads, layer_params["embedding"].shape[0],
                             batch_size)
    if kind == "scale_shift":
        return scale_shift_factors(inputs, out_grads, "scale" in layer_params,
                                   "bias" in layer_params)
    raise ValueError(f"unknown curvature layer kind {kind!r}.")


def output_fisher_product(outputs: list[jax.Array], kinds: list[str], u: list[jax.Array],
                          v: list[jax.Array]) -> jax.Array:
    """``sum_outputs u^T F_out v / B``: the output distribution's Fisher between the output
    tangents ``u`` and ``v`` (Bernoulli ``p(1-p)``, categorical ``diag(p) - p p^T``, Gaussian
    ``I``), averaged over the batch."""
    total = 0.0
    for logits, kind, a, b in zip(outputs, kinds, u, v):
        logits, a, b = (t.astype(jnp.float32) for t in (logits, a, b))
        if kind == "bernoulli":
            p = jax.nn.sigmoid(logits)
            value = jnp.sum(a * p * (1 - p) * b)
        elif kind == "categorical":
            p = jax.nn.softmax(logits)
            value = jnp.sum(a * p * b) - jnp.sum(jnp.sum(p * a, -1) * jnp.sum(p * b, -1))
        else:
            value = jnp.sum(a * b)
        total = total + value / logits.shape[0]
    return total


def _registered_outputs(loss_fn: Callable[..., Any], model_state: Any, batch: Any,
                        rng: jax.Array) -> tuple[Callable[[Any], list[Any]], list[str]]:
    """``(params -> outputs registered by the objective, their kinds)``; ``kinds`` is filled
    when the function is traced."""
    kinds: list[str] = []

    def outputs_of(p):
        with curvature_scope() as scope:
            loss_fn(p, model_state, batch, rng)
        kinds[:] = [kind for _, kind in scope.outputs]
        return [o for o, _ in scope.outputs]

    return outputs_of, kinds


def fisher_gram_fn(loss_fn: Callable[..., Any], params: Any, model_state: Any, batch: Any,
                   rng: jax.Array) -> Callable[[list[Any]], jax.Array]:
    """``vectors -> [k, k]`` Gram matrix ``v_i^T F v_j`` of the exact Fisher (the
    Gauss-Newton matrix for these losses; Martens, 2014) on this batch, from one forward-mode
    pass per vector through the registered outputs (``J v``), never forming ``F``."""
    outputs_of, kinds = _registered_outputs(loss_fn, model_state, batch, rng)

    def gram(vectors: list[Any]) -> jax.Array:
        # one primal pass, all tangents pushed forward together as a batch of k
        outputs, push_forward = jax.linearize(outputs_of, params)
        if not kinds:
            raise ValueError("adaptive K-FAC needs an output registered with "
                             "jaxdl.optim.kfac.register_output in the objective.")
        stacked = jax.vmap(push_forward)(jax.tree.map(lambda *v: jnp.stack(v), *vectors))
        k = len(vectors)
        tangents = [jax.tree.map(lambda t, i=i: t[i], stacked) for i in range(k)]
        rows = [[output_fisher_product(outputs, kinds, tangents[i], tangents[j])
                 for j in range(k)] for i in range(k)]
        return jnp.array(rows)

    return gram


def _output_curvature_loss(kind: str):
    """A function of the logits whose Hessian is the output Fisher of ``kind`` (per batch
    mean): the negative log-likelihood without its target term."""
    if kind == "bernoulli":
        return lambda z: jnp.sum(jax.nn.softplus(z.astype(jnp.float32))) / z.shape[0]
    if kind == "categorical":
        return lambda z: jnp.sum(jax.nn.logsumexp(z.astype(jnp.float32), -1)) / z.shape[0]
    return lambda z: 0.5 * jnp.sum(jnp.square(z.astype(jnp.float32))) / z.shape[0]


def fisher_vector_fn(loss_fn: Callable[..., Any], params: Any, model_state: Any, batch: Any,
                     rng: jax.Array) -> Callable[[Any], Any]:
    """``v -> F v``, the exact Fisher (= Gauss-Newton matrix ``J^T H_L J`` for these losses;
    Schraudolph, 2002; Martens, 2010) of the registered outputs on this batch, matrix-free:
    one forward-mode pass for ``J v`` and its transpose for ``J^T u``."""
    outputs_of, kinds = _registered_outputs(loss_fn, model_state, batch, rng)

    def product(v):
        outputs, push_forward = jax.linearize(outputs_of, params)
        if not kinds:
            raise ValueError("Fisher products need an output registered with "
                             "jaxdl.optim.kfac.register_output in the objective.")
        jv = push_forward(v)
        hjv = [jax.jvp(jax.grad(_output_curvature_loss(kind)), (o,), (t,))[1]
               for o, kind, t in zip(outputs, kinds, jv)]
        (fv,) = jax.linear_transpose(push_forward, params)(hjv)
        return fv

    return product
