"""Experiment configs: one schema, file loading, command-line overrides and validation.

An experiment config is a Python file whose ``get_config()`` returns an
``ml_collections.ConfigDict``, usually ``base_config()`` with a few fields changed. Overrides
come from the command line as ``--config.optimizer.learning_rate=3e-4``. Every problem
(an unknown key, a value of the wrong type, a value out of range, a name no registry knows)
raises :class:`ConfigError` naming the key, before any data is loaded or anything compiles.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from jaxdl.registry import ConfigError, Registry

__all__ = ["ConfigError", "apply_overrides", "base_config", "check_known_keys",
           "check_positive", "load_config_file", "parse_override_args"]


def base_config() -> ml_collections.ConfigDict:
    """The full schema with defaults: a small CNN on scikit-learn's digits (the quickstart)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = ml_collections.ConfigDict({"name": "digits"})
    c.model = ml_collections.ConfigDict(
        {"name": "cnn", "features": (32, 64), "hidden": 128, "kernel_size": 3}
    )
    c.loss = ml_collections.ConfigDict({"name": "classification", "label_smoothing": 0.0})
    c.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "learning_rate": 3e-3,
            "weight_decay": 1e-4,
            "schedule": "warmup_cosine",
            "warmup_steps": 30,
            "final_fraction": 0.0,
            "clip_norm": 0.0,
        }
    )
    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_steps = 600
    c.log_every = 20
    c.eval_every = 100
    c.checkpoint_every = 200
    c.keep_checkpoints = 2
    c.async_checkpoints = True
    # Mixed precision (jaxdl.parallel.precision): f32, bf16 (bf16 compute, f32 master
    # weights), f16 (with dynamic loss scaling: init_scale, doubled after growth_interval
    # finite steps, halved and the step skipped on overflow).
    c.precision = ml_collections.ConfigDict(
        {"policy": "f32", "init_scale": 2.0**15, "growth_interval": 2000})
    # Gradient accumulation inside one step: the batch is split into this many microbatches
    # run one after the other with lax.scan (less activation memory, same gradient).
    c.microbatches = 1
    # "scan" (above) or "unroll": the microbatches as independent passes over strided slices
    # of the batch, no memory saving but faster on CPU (XLA runs them concurrently; GPT step
    # of experiments.bench.gpt 0.96-0.97x the one-pass step with 4 of them on 2 cores).
    c.microbatch_mode = "scan"
    # Devices along the mesh's data axis; -1 takes every local device. ``preset``: the
    # sharding preset (jaxdl.parallel.rules: dp, fsdp, tp, fsdp+tp, pp); for presets other
    # than dp, ``data`` is the number of devices of the whole mesh and ``model`` the size of
    # the fsdp+tp model axis (-1: the preset's default, 2).
    c.mesh = ml_collections.ConfigDict({"data": -1, "preset": "dp", "model": -1})
    # Training monitors (jaxdl.monitor.training), off by default where they cost time.
    c.monitor = ml_collections.ConfigDict({
        "grad_norm": False,  # global gradient norm in the train metrics
        "skip_nonfinite": False, "max_nonfinite": 100,  # drop NaN/inf steps, name the layer
        "spike_threshold": 0.0, "spike_window": 50,  # > 1: roll back loss spikes ...
        "spike_min_excess": 0.5,  # ... that also exceed the median loss by this many nats
        "lr_backoff": 0.5, "max_rollbacks": 3,  # ... and lower the learning rate
        "dynamics_every": 0,  # per-layer gradient/update/activation statistics every N steps
        "inject_nan_steps": (), "inject_spike_steps": (),  # fault injection (debugging)
    })
    # Early stopping on a held-out metric (jaxdl.regularize.early_stopping); patience = the
    # number of evaluations without improvement before stopping, 0 = off.
    c.early_stopping = ml_collections.ConfigDict(
        {"patience": 0, "metric": "loss", "mode": "min", "min_delta": 0.0,
         "restore_best": True})
    # XLA:CPU convolutions (jaxdl.xla_cpu): "eigen" compiles the steps of a model with
    # convolutions with Eigen's multi-threaded convolutions, YNNPACK keeping the matmuls and
    # reductions (small CNN step 1.5x, ResNet-18 1.8x faster on 2 cores than XLA's default,
    # experiments.bench.cnn); "ynnpack" keeps XLA's default. No effect on other backends.
    c.xla_cpu_convolutions = "eigen"
    c.progress_bar = True
    c.plots = True
    return c


def load_config_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Import ``path`` and return its ``get_config()``.

    ``path`` may also be a bare name such as ``mnist_cnn``, looked up as
    ``experiments/configs/<name>.py`` under the current directory.
    """
    file = pathlib.Path(path)
    if not file.suffix and not file.exists():
        file = pathlib.Path("experiments") / "configs" / f"{path}.py"
    if not file.is_file():
        raise ConfigError(f"--config: no config file at {str(file)!r}.")
    spec = importlib.util.spec_from_file_location(f"_jaxdl_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {str(file)!r} defines no get_config().")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"--config: get_config() in {str(file)!r} must return a ConfigDict.")
    return config


def _parse_bool(text: str, key: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"config.{key}={text!r}: expected a boolean (true/false).")


def _parse_value(text: str, current: Any, key: str) -> Any:
    """Parse ``text`` into the type of the field's current value."""
    try:
        if isinstance(current, bool):
            return _parse_bool(text, key)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, (tuple, list)):
            value = ast.literal_eval(text)
            if isinstance(value, (int, float, str)):
                value = (value,)
            if not isinstance(value, (tuple, list)):
                raise ValueError
            return type(current)(value)
    except ConfigError:
        raise
    except (ValueError, SyntaxError):
        raise ConfigError(
            f"config.{key}={text!r}: expected a value of type {type(current).__name__} "
            f"(current value {current!r})."
        ) from None
    try:  # a field without a typed default (None or a new factory option): a Python literal
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(
    config: ml_collections.ConfigDict,
    overrides: Mapping[str, str],
    *,
    registries: Mapping[str, Registry] | None = None,
) -> ml_collections.ConfigDict:
    """Set ``config[dotted.key] = value`` for each override, parsing text by the field's type.

    A key absent from the config is refused, except inside a section built by a registry
    (e.g. ``model``) when the chosen factory takes that keyword argument.
    """
    registries = registries or {}
    for dotted, text in overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        for depth, part in enumerate(parents):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                where = ".".join(parents[: depth + 1])
                raise ConfigError(_unknown_key_message(where, node, part))
            node = node[part]
        if not isinstance(node, ml_collections.ConfigDict):
            raise ConfigError(f"config.{'.'.join(parents)} is a value, not a section.")
        if leaf in node:
            current = node[leaf]
            if isinstance(current, ml_collections.ConfigDict):
                raise ConfigError(f"config.{dotted} is a section; set one of its keys instead.")
            value = _parse_value(text, current, dotted) if isinstance(text, str) else text
            with node.unlocked():
                try:
                    node[leaf] = value
                except TypeError as error:
                    raise ConfigError(f"config.{dotted}={text!r}: {error}") from None
            continue
        section = ".".join(parents)
        registry = registries.get(section)
        if registry is not None and "name" in node:
            registry.check_kwargs(node["name"], {leaf: None}, field=section)
            with node.unlocked():
                node[leaf] = _parse_value(text, None, dotted) if isinstance(text, str) else text
            continue
        raise ConfigError(_unknown_key_message(dotted, node, leaf))
    return config


def _unknown_key_message(dotted: str, node: Any, part: str) -> str:
    keys = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    close = difflib.get_close_matches(part, keys, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown config key config.{dotted}; the keys there are {keys}.{hint}"


def parse_override_args(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``--config.a.b=v`` / ``--config.a.b v`` arguments from the rest of ``argv``."""
    overrides: dict[str, str] = {}
    rest: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("--config."):
            key, sep, value = arg[len("--config.") :].partition("=")
            if not sep:
                if not args:
                    raise ConfigError(f"{arg} needs a value: {arg}=VALUE.")
                value = args.pop(0)
            overrides[key] = value
        else:
            rest.append(arg)
    return overrides, rest


def check_known_keys(
    config: ml_collections.ConfigDict,
    schema: ml_collections.ConfigDict | None = None,
    *,
    open_sections: Sequence[str] = (),
    prefix: str = "",
) -> None:
    """Raise ConfigError for any key of ``config`` that ``schema`` (default: base_config())
    lacks, e.g. a misspelt field set in a config file. Sections listed in ``open_sections``
    are left to their registry factory's own signature check."""
    schema = base_config() if schema is None else schema
    for key in config.keys():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(_unknown_key_message(dotted, schema, key))
        value, expected = config[key], schema[key]
        if isinstance(expected, ml_collections.ConfigDict) and dotted not in open_sections:
            if not isinstance(value, ml_collections.ConfigDict):
                raise ConfigError(f"config.{dotted} must be a section with keys "
                                  f"{sorted(expected.keys())}; got {value!r}.")
            check_known_keys(value, expected, open_sections=open_sections,
                             prefix=f"{dotted}.")


def check_positive(config: ml_collections.ConfigDict, *keys: str, allow_zero: bool = False):
    """Raise ConfigError unless every ``config.<key>`` is an int > 0 (or >= 0)."""
    for key in keys:
        value = config[key]
        ok = isinstance(value, int) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"config.{key}={value!r}: expected an integer {bound}.")
