"""The :class:`Dataset` container, the ``DATASETS`` registry and the cached loader.

Each factory in :data:`DATASETS` takes keyword-only arguments, checks them before doing
any work, and returns a :class:`Dataset` of host numpy arrays that are read-only.
Held-out splits are deterministic functions of ``split_seed`` (never of a training seed).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxdl.data.files import CACHE_DIR_ENV, DATA_DIR_ENV
from jaxdl.registry import ConfigError, Registry

DATASETS = Registry("dataset")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A data set held in host memory.

    Attributes:
      name: the registry name, e.g. ``"mnist"``.
      train: ``{"x": inputs [n_train, *input_shape], "y": int32 targets}``. For
        classification ``y`` is int32 [n_train]; for next-token text it is int32
        [n_train, seq_len].
      eval: the held-out split, same keys, dtypes and per-example shapes as ``train``.
      num_classes: number of classes, or the vocabulary size for text.
      input_shape: shape of ONE example's ``x``.
      info: free-form metadata (source files, split indices, vocabulary, ...).
    """

    name: str
    train: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    num_classes: int
    input_shape: tuple[int, ...]
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for split_name in ("train", "eval"):
            split = getattr(self, split_name)
            if not {"x", "y"} <= set(split):
                raise ValueError(
                    f"Dataset.{split_name} needs keys 'x' and 'y', got {sorted(split)}"
                )
            if split["x"].shape[0] != split["y"].shape[0]:
                raise ValueError(
                    f"Dataset.{split_name}: x has {split['x'].shape[0]} examples "
                    f"but y has {split['y'].shape[0]}"
                )
            if split["x"].shape[1:] != tuple(self.input_shape):
                raise ValueError(
                    f"Dataset.{split_name}.x examples have shape {split['x'].shape[1:]}, "
                    f"expected input_shape {tuple(self.input_shape)}"
                )


# --------------------------------------------------------------------------- arguments


def int_arg(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def fraction_arg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be in (0, 1) (exclusive), got {value}")
    return value


def readonly(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        arr.flags.writeable = False
        out[key] = arr
    return out


def make_dataset(
    name: str,
    train: Mapping[str, np.ndarray],
    eval: Mapping[str, np.ndarray],
    num_classes: int,
    input_shape: Sequence[int],
    info: dict,
) -> Dataset:
    info = {k: readonly({k: v})[k] if isinstance(v, np.ndarray) else v for k, v in info.items()}
    return Dataset(
        name=name,
        train=readonly(train),
        eval=readonly(eval),
        num_classes=int(num_classes),
        input_shape=tuple(int(d) for d in input_shape),
        info=info,
    )


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(len(labels))`` whose every prefix is stratified.

    Each class's examples are shuffled and spread evenly over [0, 1); sorting by that
    position interleaves the classes, so any prefix (or contiguous slice) holds each class
    in proportion to its frequency, within one or two examples.

    Args:
      labels: integer class labels [n].
      seed: split seed.

    Returns:
      int64 [n], a permutation of the example indices.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    position = np.empty(labels.shape[0], dtype=np.float64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        position[members] = (np.arange(members.size) + rng.random()) / members.size
    tiebreak = rng.random(labels.shape[0])
    return np.lexsort((tiebreak, position))


# --------------------------------------------------------------------------- loading


def _hashable(value: Any) -> Hashable:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    hash(value)  # raises TypeError for unhashable values
    return value


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, kwargs: tuple, data_dir: str | None, cache_dir: str | None) -> Dataset:
    # data_dir/cache_dir are part of the key only, so a changed environment reloads.
    del data_dir, cache_dir
    return DATASETS.get(name)(**dict(kwargs))


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """``DATASETS.get(name)(**kwargs)``, cached in-process.

    The cache key is the name, the arguments and the ``JAXDL_DATA_DIR``/``JAXDL_CACHE_DIR``
    environment, so repeated loads are free. Arrays are read-only, and each call returns
    fresh ``train``/``eval`` dicts and a deep copy of ``info``, so callers cannot corrupt the cache.

    Raises ConfigError for an unknown name or argument.
    """
    DATASETS.check_kwargs(name, kwargs, field="data")
    try:
        key = tuple(sorted((k, _hashable(v)) for k, v in kwargs.items()))
    except TypeError:
        dataset = DATASETS.get(name)(**kwargs)
    else:
        env = os.environ.get(DATA_DIR_ENV), os.environ.get(CACHE_DIR_ENV)
        dataset = _load_cached(name, key, *env)
    return dataclasses.replace(
        dataset,
        train=dict(dataset.train),
        eval=dict(dataset.eval),
        info=copy.deepcopy(dataset.info),
    )
