"""Meshes and shardings: data parallelism and the presets (dp, fsdp, tp, fsdp+tp, pp)."""

from jaxdl.parallel.mesh import batch_sharding, make_mesh, make_mesh_for, replicated
from jaxdl.parallel.pipeline import (
    PipelineParts,
    make_pipeline_train_step,
    make_stage_mesh,
    pipeline_loss_and_grads,
)
from jaxdl.parallel.pipeline_schedules import Schedule, bubble_theory, build_schedule
from jaxdl.parallel.rules import PRESETS, activation_sharding, param_shardings, param_specs

__all__ = ["PRESETS", "PipelineParts", "Schedule", "activation_sharding", "batch_sharding",
           "bubble_theory", "build_schedule", "make_mesh", "make_mesh_for",
           "make_pipeline_train_step", "make_stage_mesh", "param_shardings", "param_specs",
           "pipeline_loss_and_grads", "replicated"]
