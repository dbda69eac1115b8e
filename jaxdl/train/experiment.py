"""Turn a validated config into the pieces of a run: data, mesh, model, optimizer, steps.

:func:`build_experiment` is what the training loop, the benchmarks and the notebooks share,
so there is exactly one way a config becomes compiled code.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxdl import functional, host_memory, parallel, xla_cpu
from jaxdl.config import check_known_keys, check_positive
from jaxdl.data import DATASETS, Dataset, load_dataset
from jaxdl.models import MODELS
from jaxdl.monitor.training import validate_monitor, wrap_optimizer
from jaxdl.optim import OPTIMIZERS, SHARED_KEYS, build_optimizer
from jaxdl.parallel import precision as mixed_precision
from jaxdl.registry import ConfigError
from jaxdl.train.objectives import OBJECTIVES, Objective
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.step import (
    MICROBATCH_MODES,
    CompiledStep,
    batch_spec,
    make_eval_step,
    make_train_step,
)

_log = logging.getLogger(__name__)
REGISTRIES = {"data": DATASETS, "model": MODELS, "loss": OBJECTIVES, "optimizer": OPTIMIZERS}
MODEL_SUPPLIED = ("input_shape", "num_classes", "rngs")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Check every field that can be checked without loading data; ConfigError otherwise."""
    check_known_keys(config, open_sections=tuple(REGISTRIES))
    check_positive(config, "batch_size", "eval_batch_size", "num_steps", "keep_checkpoints")
    check_positive(config, "log_every", "eval_every", "checkpoint_every", allow_zero=True)
    if not isinstance(config.seed, int) or config.seed < 0:
        raise ConfigError(f"config.seed={config.seed!r}: expected an integer >= 0.")
    for section, registry in REGISTRIES.items():
        options = dict(config[section])
        name = options.pop("name", None)
        if name is None:
            raise ConfigError(f"config.{section}.name is missing; expected one of "
                              f"{registry.names()}.")
        registry.get(name, field=f"{section}.name")
        if section == "optimizer":
            options = {k: v for k, v in options.items() if k not in SHARED_KEYS}
        for supplied in MODEL_SUPPLIED if section == "model" else ():
            if supplied in options:
                raise ConfigError(f"config.model.{supplied} is set by the trainer from the data "
                                  "set; remove it from the config.")
        registry.check_kwargs(name, options, field=section)
    validate_monitor(config)
    _validate_precision(config)
    if config.xla_cpu_convolutions not in xla_cpu.MODES:
        raise ConfigError(f"config.xla_cpu_convolutions={config.xla_cpu_convolutions!r}: "
                          f"expected one of {xla_cpu.MODES}.")
    devices = _make_mesh(config).shape[parallel.mesh.DATA_AXIS]
    for key in ("batch_size", "eval_batch_size"):
        if config[key] % devices:
            raise ConfigError(f"config.{key}={config[key]} must be divisible by the {devices} "
                              f"devices on the mesh's data axis (config.mesh.data).")


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, built from one config. Pure pytrees plus compiled steps."""

    config: ml_collections.ConfigDict
    dataset: Dataset
    mesh: Mesh
    graphdef: nnx.GraphDef
    objective: Objective
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    train_step: CompiledStep
    eval_step: CompiledStep
    _init: Any = dataclasses.field(repr=False)

    def init_state(self) -> TrainState:
        """A fresh step-0 TrainState from ``config.seed``, created already placed on the mesh.

        Each call returns new buffers (the train step donates, i.e. consumes, its input).
        """
        return self._init(jax.random.key(self.config.seed))

    @property
    def batch_sharding(self) -> jax.sharding.NamedSharding:
        return parallel.batch_sharding(self.mesh)


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
    """Validate ``config`` and build the data set, mesh, model, optimizer and compiled steps."""
    validate_config(config)
    dataset = load_dataset(config.data.name,
                           **{k: v for k, v in config.data.items() if k != "name"})
    mesh = _make_mesh(config)
    replicated = parallel.replicated(mesh)
    batches = parallel.batch_sharding(mesh)
    num_train = len(dataset.train["y"])
    if config.batch_size > num_train:
        raise ConfigError(f"config.batch_size={config.batch_size} exceeds the {num_train} "
                          f"training examples of data set {dataset.name!r}.")

    def factory(rngs: nnx.Rngs) -> nnx.Module:
        return MODELS.build(config.model, field="model", input_shape=dataset.input_shape,
                            num_classes=dataset.num_classes, rngs=rngs)

    abstract = functional.abstract_model(factory)
    graphdef, _, _ = nnx.split(abstract, nnx.Param, ...)
    # On CPU, steps of convolutional models compile with Eigen convolutions (jaxdl.xla_cpu).
    options = xla_cpu.compiler_options(abstract, config.xla_cpu_convolutions)
    if jax.default_backend() == "cpu" and host_memory.status() != "applied":
        _log.info("XLA:CPU temporaries are re-faulted every step (jaxdl.host_memory %s)",
                  host_memory.status())
    objective = OBJECTIVES.build(config.loss, field="loss", graphdef=graphdef)
    tx, schedule = build_optimizer(config.optimizer, config.num_steps)
    tx = wrap_optimizer(tx, config.monitor)  # learning-rate back-off, non-finite guard
    tx = mixed_precision.make_optimizer(  # f16: loss scaling wraps the whole optimizer
        tx, config.precision.policy, init_scale=float(config.precision.init_scale),
        growth_interval=config.precision.growth_interval)

    def init(key: jax.Array) -> TrainState:
        init_key, state_key = jax.random.split(key)
        _, params, model_state = functional.split_model(factory(nnx.Rngs(init_key)))
        return create_train_state(params, model_state, tx, state_key)

    train_spec = _example_spec(dataset.train, config.batch_size)
    eval_spec = {**_example_spec(dataset.eval, config.eval_batch_size),
                 "mask": ((config.eval_batch_size,), "float32")}
    state_sharding = replicated
    if config.mesh.get("preset", "dp") != "dp":  # dp keeps the replicated path above, unchanged
        from jaxdl.parallel.sharded_init import state_shardings  # (imports jaxdl.train)

        state_sharding = state_shardings(jax.eval_shape(init, jax.random.key(0)), mesh,
                                         config.mesh.preset)
    train_step = make_train_step(objective.loss, tx, state_sharding=state_sharding,
                                 batch_sharding=batches, metrics_sharding=replicated,
                                 expected_batch=train_spec, grad_norm=config.monitor.grad_norm,
                                 precision=config.precision.policy,
                                 microbatches=config.microbatches,
                                 microbatch_mode=config.microbatch_mode,
                                 compiler_options=options)
    eval_step = make_eval_step(objective.evaluate, state_sharding=state_sharding,
                               batch_sharding=batches, metrics_sharding=replicated,
                               expected_batch=eval_spec, compiler_options=options)
    return Experiment(config, dataset, mesh, graphdef, objective, tx, schedule, train_step,
                      eval_step, jax.jit(init, out_shardings=state_sharding))


def _validate_precision(config: ml_collections.ConfigDict) -> None:
    """``precision.policy`` is known and ``microbatches`` divides each device's batch."""
    mixed_precision.get_policy(config.precision.policy)
    k = config.microbatches
    if not isinstance(k, int) or k < 1 or config.batch_size % k:
        raise ConfigError(f"config.microbatches={k!r}: expected an integer >= 1 that divides "
                          f"config.batch_size={config.batch_size}.")
    if config.microbatch_mode not in MICROBATCH_MODES:
        raise ConfigError(f"config.microbatch_mode={config.microbatch_mode!r}: expected one of "
                          f"{MICROBATCH_MODES}.")


def _make_mesh(config: ml_collections.ConfigDict) -> Mesh:
    """The run's mesh: ``mesh.data`` devices on a data axis (dp), or the preset's mesh."""
    preset = config.mesh.get("preset", "dp")
    if preset == "dp":
        return parallel.make_mesh(config.mesh.data)
    return parallel.make_mesh_for(preset, config.mesh.data, model=config.mesh.get("model", -1))


def _example_spec(arrays: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """``{key: ((batch_size, *example_shape), dtype)}`` for a data split."""
    spec = batch_spec({k: v[:1] for k, v in arrays.items()})
    return {k: ((batch_size, *shape[1:]), dtype) for k, (shape, dtype) in spec.items()}
