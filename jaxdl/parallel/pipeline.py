"""Pipeline parallelism: a stack of identical layers split into S stages over a mesh axis.

The model is three pure functions (:class:`PipelineParts`): ``embed(embed_params, x) -> h``,
``layer(layer_params, h) -> h`` for one of ``L`` identical layers, and
``head_loss(head_params, h, y) -> scalar`` (mean over the batch). Parameters are a dict
``{"embed", "layers", "head"}`` whose ``layers`` leaves carry a leading ``[L]`` axis (e.g.
a scanned GPT ``LayerStack``). Layers are grouped into S stages of ``L / S`` consecutive
layers, the stage axis sharded over mesh axis ``stage``; embedding and head are replicated.
The embedding runs outside the pipeline (its gradient comes from the cotangent of stage 0's
input); the head and loss run on the last stage, inside its backward ticks (a forward tick
only runs the stage's layers).

One ``jax.shard_map`` runs the tick table of a :class:`~jaxdl.parallel.pipeline_schedules.
Schedule` with ``lax.scan``: at each tick every stage does its table entry (forward,
backward or nothing, selected with ``lax.switch`` on the stage's own entry, so idle ticks
do no work), then activations move to ``s + 1`` and gradients to ``s - 1`` with two
``lax.ppermute``. The backward of a microbatch is an explicit per-stage ``jax.vjp`` that
recomputes the stage's forward from the stashed stage input (no residuals are kept across
ticks), so the activation stash holds only stage inputs: ``stash_slots`` of them (M for
GPipe, at most S for 1F1B). GPipe and 1F1B differ only in the table (GPipe's backward is
thus also explicit, not autodiff through the forward loop). Gradients equal those of the
unpipelined model up to float rounding (sums in a different order).

Stages advance in lockstep (the ppermutes end every tick), so a tick lasts as long as its
slowest stage: when a backward costs more than a forward, 1F1B ticks that mix the two
stretch (see :func:`~jaxdl.parallel.pipeline_schedules.lockstep_bubble`). Only the stage
axis is used; combining it with a data axis (dp x pp) is not implemented here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import AxisType, Mesh, PartitionSpec

from jaxdl.parallel.pipeline_schedules import BACKWARD, FORWARD, Schedule, build_schedule
from jaxdl.registry import ConfigError

STAGE_AXIS = "stage"
PyTree = Any


@dataclasses.dataclass(frozen=True)
class PipelineParts:
    """The model as pure functions (shapes: ``h: [batch, ...]`` is the same at every layer).

    embed: ``(embed_params, x: [batch, ...]) -> h``.
    layer: ``(layer_params, h) -> h``, one layer; ``layer_params`` is one slice of the stack.
    head_loss: ``(head_params, h, y: [batch, ...]) -> scalar`` mean loss over the batch.
    """

    embed: Callable[[PyTree, jax.Array], jax.Array]
    layer: Callable[[PyTree, jax.Array], jax.Array]
    head_loss: Callable[[PyTree, jax.Array, jax.Array], jax.Array]

    def stage(self, stage_params: PyTree, h: jax.Array) -> jax.Array:
        """Run the ``L / S`` layers of one stage (leaves ``[L / S, ...]``) in order."""
        return lax.scan(lambda c, p: (self.layer(p, c), None), h, stage_params)[0]

    def reference_loss(self, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
        """The unpipelined model: embed, every layer in order, head and loss."""
        return self.head_loss(params["head"], self.stage(params["layers"],
                                                         self.embed(params["embed"], x)), y)


def make_stage_mesh(num_stages: int) -> Mesh:
    """A 1-D mesh of ``num_stages`` devices along ``stage``.

    Axis type ``Auto``: outside the ``shard_map`` the compiler places the reshapes of the
    layer stack; inside, every stage is programmed by hand.
    """
    if not isinstance(num_stages, int) or not 1 <= num_stages <= jax.device_count():
        raise ConfigError(f"pipeline.stages={num_stages!r}: expected an integer in "
                          f"[1, {jax.device_count()}] (devices available).")
    return jax.make_mesh((num_stages,), (STAGE_AXIS,), axis_types=(AxisType.Auto,),
                         devices=jax.devices()[:num_stages])


def check_config(mesh: Mesh, schedule: Schedule, num_layers: int, batch: int) -> None:
    """Raise :class:`ConfigError` naming the field when the pipeline cannot be laid out."""
    S, M = schedule.num_stages, schedule.num_microbatches
    if STAGE_AXIS not in mesh.shape or mesh.shape[STAGE_AXIS] != S:
        raise ConfigError(f"pipeline.stages={S}: expected the size of mesh axis "
                          f"'{STAGE_AXIS}' (mesh shape {dict(mesh.shape)}).")
    if num_layers % S:
        raise ConfigError(f"model.num_layers={num_layers}: expected a multiple of "
                          f"pipeline.stages={S}.")
    if batch % M:
        raise ConfigError(f"pipeline.microbatches={M}: expected a divisor of the batch size "
                          f"{batch}.")


def _pipeline_body(parts: PipelineParts, schedule: Schedule, stage_params, head_params, h0, y):
    """Per-device program. ``stage_params`` leaves ``[1, L/S, ...]``; ``h0: [M, mb, ...]``."""
    S, M = schedule.num_stages, schedule.num_microbatches
    K, Kg = schedule.stash_slots, schedule.grad_slots
    params = jax.tree.map(lambda a: a[0], stage_params)
    s = lax.axis_index(STAGE_AXIS)
    first, last = s == 0, s == S - 1
    zeros_h = jnp.zeros(h0.shape[1:], h0.dtype)

    def forward(carry, m):
        h_in = jnp.where(first, h0[m], carry["stash"][m % K])
        carry = dict(carry, stash=carry["stash"].at[m % K].set(h_in))
        return carry, parts.stage(params, h_in), zeros_h

    def backward(carry, m):
        h_out, stage_vjp = jax.vjp(parts.stage, params, carry["stash"][m % K])

        def head():  # last stage: loss of this microbatch and its gradients
            loss, head_vjp = jax.vjp(lambda hp, h: parts.head_loss(hp, h, y[m]),
                                     head_params, h_out)
            return (loss.astype(jnp.float32),) + head_vjp(jnp.ones_like(loss) / M)

        def no_head():
            return jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, head_params), zeros_h

        loss, d_head, d_out = lax.cond(last, head, no_head)
        d_params, d_h = stage_vjp(jnp.where(last, d_out, carry["grad_in"][m % Kg]))
        add = functools.partial(jax.tree.map, jnp.add)
        carry = dict(carry, loss=carry["loss"] + loss,
                     d_stage=add(carry["d_stage"], d_params),
                     d_head=add(carry["d_head"], d_head),
                     d_h0=carry["d_h0"].at[m].set(jnp.where(first, d_h, carry["d_h0"][m])))
        return carry, zeros_h, d_h

    def idle(carry, m):
        return carry, zeros_h, zeros_h

    def tick(carry, row):  # row: [S, 2] this tick's (kind, microbatch) for every stage
        carry, to_next, to_prev = lax.switch(row[s, 0], (idle, forward, backward),
                                             carry, row[s, 1])
        from_prev = lax.ppermute(to_next, STAGE_AXIS, [(i, i + 1) for i in range(S - 1)])
        from_next = lax.ppermute(to_prev, STAGE_AXIS, [(i + 1, i) for i in range(S - 1)])
        sender = row[jnp.maximum(s - 1, 0)]  # did s - 1 run a forward? keep its activation
        got = (s > 0) & (sender[0] == FORWARD)
        stash = carry["stash"].at[sender[1] % K].set(
            jnp.where(got, from_prev, carry["stash"][sender[1] % K]))
        sender = row[jnp.minimum(s + 1, S - 1)]  # did s + 1 run a backward? keep its gradient
        got = (s < S - 1) & (sender[0] == BACKWARD)
        grad_in = carry["grad_in"].at[sender[1] % Kg].set(
            jnp.where(got, from_next, carry["grad_in"][sender[1] % Kg]))
        return dict(carry, stash=stash, grad_in=grad_in), None

    carry = dict(stash=jnp.zeros((K, *zeros_h.shape), h0.dtype),
                 grad_in=jnp.zeros((Kg, *zeros_h.shape), h0.dtype),
                 loss=jnp.zeros((), jnp.float32), d_h0=jnp.zeros_like(h0),
                 d_stage=jax.tree.map(jnp.zeros_like, params),
                 d_head=jax.tree.map(jnp.zeros_like, head_params))
    carry, _ = lax.scan(tick, carry, jnp.asarray(schedule.table))
    total = functools.partial(lax.psum, axis_name=STAGE_AXIS)  # one stage holds each value
    return (total(carry["loss"]) / M, jax.tree.map(lambda g: g[None], carry["d_stage"]),
            jax.tree.map(total, carry["d_head"]), total(carry["d_h0"]))


def pipeline_loss_and_grads(parts: PipelineParts, params: PyTree, x: jax.Array, y: jax.Array,
                            *, mesh: Mesh, schedule: Schedule) -> tuple[jax.Array, PyTree]:
    """Mean loss over the batch and its gradient w.r.t. ``params`` (same structure).

    Args:
      params: ``{"embed", "layers", "head"}``; ``layers`` leaves ``[L, ...]``.
      x, y: the batch ``[batch, ...]``, split into ``schedule.num_microbatches`` microbatches.
      mesh: a mesh with axis ``stage`` of size ``schedule.num_stages``.
    """
    S, M = schedule.num_stages, schedule.num_microbatches
    num_layers = jax.tree.leaves(params["layers"])[0].shape[0]
    check_config(mesh, schedule, num_layers, x.shape[0])
    microbatch = lambda a: a.reshape(M, a.shape[0] // M, *a.shape[1:])  # noqa: E731
    h0, embed_vjp = jax.vjp(lambda p: microbatch(parts.embed(p, x)), params["embed"])
    stages = jax.tree.map(lambda a: a.reshape(S, num_layers // S, *a.shape[1:]),
                          params["layers"])
    run = jax.shard_map(
        functools.partial(_pipeline_body, parts, schedule), mesh=mesh,
        in_specs=(PartitionSpec(STAGE_AXIS), PartitionSpec(), PartitionSpec(), PartitionSpec()),
        out_specs=(PartitionSpec(), PartitionSpec(STAGE_AXIS), PartitionSpec(), PartitionSpec()),
        check_vma=False)  # the body never differentiates through shard_map itself
    loss, d_stages, d_head, d_h0 = run(stages, params["head"], h0, microbatch(y))
    d_layers = jax.tree.map(lambda g: g.reshape(num_layers, *g.shape[2:]), d_stages)
    return loss, {"embed": embed_vjp(d_h0)[0], "layers": d_layers, "head": d_head}


def make_pipeline_train_step(parts: PipelineParts, optimizer: optax.GradientTransformation, *,
                             mesh: Mesh, schedule: str | Schedule, num_microbatches: int = 0):
    """A jitted ``step(params, opt_state, x, y) -> (params, opt_state, loss)``.

    ``schedule``: a :class:`Schedule` or its name (then ``num_microbatches`` is required).
    """
    if STAGE_AXIS not in mesh.shape:
        raise ConfigError(f"mesh axes {tuple(mesh.shape)}: expected an axis '{STAGE_AXIS}'.")
    if isinstance(schedule, str):
        schedule = build_schedule(schedule, mesh.shape[STAGE_AXIS], num_microbatches)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = pipeline_loss_and_grads(parts, params, x, y, mesh=mesh,
                                              schedule=schedule)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step
