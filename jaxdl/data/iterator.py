"""Deterministic, checkpointable batching of host numpy arrays.

:class:`BatchIterator` yields training batches forever. The order of epoch ``e`` is
``np.random.default_rng([seed, e]).permutation(n)``, a pure function of (seed, epoch), so
the whole iterator state is ``(epoch, position)`` and restoring it reproduces the exact
batch sequence. :func:`eval_batches` walks a split once, in order, padding the last batch
and marking real examples with a ``"mask"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


def _leading_dim(arrays: Mapping[str, np.ndarray]) -> int:
    if not arrays:
        raise ValueError("arrays must hold at least one array")
    sizes = {key: np.shape(arr)[0] if np.ndim(arr) else None for key, arr in arrays.items()}
    if None in sizes.values():
        scalar = [k for k, v in sizes.items() if v is None]
        raise ValueError(f"arrays must have a leading example dimension; {scalar} are scalars")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays must share their leading dimension, got sizes {sizes}")
    return next(iter(sizes.values()))


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class BatchIterator:
    """Infinite, shuffled, drop-remainder batches over epochs.

    Args:
      arrays: ``{key: array [n, ...]}``, all with the same leading dimension n.
      batch_size: examples per batch, 1 <= batch_size <= n.
      seed: non-negative int; epoch ``e`` visits examples in the order
        ``np.random.default_rng([seed, e]).permutation(n)``.
      shuffle: if False every epoch visits the examples in order 0..n-1.

    Each ``next()`` returns ``{key: array [batch_size, ...]}`` (fresh copies, same dtypes);
    an epoch is ``n // batch_size`` batches and the last ``n % batch_size`` examples of
    each epoch's order are skipped.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
    ):
        self._arrays = {key: np.asarray(arr) for key, arr in arrays.items()}
        self._n = _leading_dim(self._arrays)
        self._batch_size = _positive_int("batch_size", batch_size)
        if self._batch_size > self._n:
            raise ValueError(
                f"batch_size={self._batch_size} is larger than the number of examples "
                f"n={self._n}; use batch_size <= {self._n}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self._seed = int(seed)
        self._shuffle = bool(shuffle)
        self._epoch = 0
        self._position = 0
        self._order_epoch = -1
        self._order = np.arange(self._n)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch, ``n // batch_size``."""
        return self._n // self._batch_size

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from (0-based)."""
        return self._epoch

    @property
    def position(self) -> int:
        """Index of the next batch within its epoch, in [0, steps_per_epoch)."""
        return self._position

    @property
    def num_examples(self) -> int:
        return self._n

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        """int64 [n]: the order in which epoch ``epoch`` visits the examples."""
        if not self._shuffle:
            return np.arange(self._n)
        return np.random.default_rng([self._seed, int(epoch)]).permutation(self._n)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._order_epoch != self._epoch:
            self._order = self.epoch_order(self._epoch)
            self._order_epoch = self._epoch
        start = self._position * self._batch_size
        index = self._order[start : start + self._batch_size]
        batch = {key: np.take(arr, index, axis=0) for key, arr in self._arrays.items()}
        self._position += 1
        if self._position == self.steps_per_epoch:
            self._epoch += 1
            self._position = 0
        return batch

    def get_state(self) -> dict[str, int | bool]:
        """JSON-serializable position: epoch, position and the settings it depends on."""
        return {
            "epoch": self._epoch,
            "position": self._position,
            "seed": self._seed,
            "batch_size": self._batch_size,
            "num_examples": self._n,
            "shuffle": self._shuffle,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`get_state` result.

        Raises ValueError if the state was saved by an iterator with a different seed,
        batch_size, num_examples or shuffle setting (naming the field, the saved and the
        current value), or if its epoch/position are out of range.
        """
        current = self.get_state()
        for field in ("seed", "batch_size", "num_examples", "shuffle"):
            if field in state and state[field] != current[field]:
                raise ValueError(
                    f"iterator state mismatch: {field} was {state[field]!r} when saved but is "
                    f"{current[field]!r} now"
                )
        missing = [f for f in ("epoch", "position") if f not in state]
        if missing:
            raise ValueError(f"iterator state lacks {missing}; got keys {sorted(state)}")
        epoch, position = state["epoch"], state["position"]
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"iterator state epoch must be a non-negative integer, got {epoch!r}")
        if (
            isinstance(position, bool)
            or not isinstance(position, (int, np.integer))
            or not 0 <= position < self.steps_per_epoch
        ):
            raise ValueError(
                f"iterator state position must be an integer in [0, {self.steps_per_epoch}), "
                f"got {position!r}"
            )
        self._epoch, self._position = int(epoch), int(position)


def eval_batches(
    arrays: Mapping[str, np.ndarray], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order, in batches of one fixed shape.

    Args:
      arrays: ``{key: array [n, ...]}`` with a shared leading dimension n; no key "mask".
      batch_size: examples per batch (may exceed n).

    Yields:
      ``ceil(n / batch_size)`` dicts of ``{key: array [batch_size, ...]}`` plus
      ``"mask"``: float32 [batch_size], 1.0 for real examples and 0.0 for padding. The last
      batch is padded by repeating example 0, so padded inputs are valid data; weight any
      per-example metric by the mask.
    """
    arrays = {key: np.asarray(arr) for key, arr in arrays.items()}
    if "mask" in arrays:
        raise ValueError("arrays must not have a 'mask' key; eval_batches adds it")
    n = _leading_dim(arrays)
    batch_size = _positive_int("batch_size", batch_size)
    for start in range(0, n, batch_size):
        real = min(batch_size, n - start)
        index = np.arange(start, start + batch_size)
        index[real:] = 0
        batch = {key: np.take(arr, index, axis=0) for key, arr in arrays.items()}
        mask = np.zeros(batch_size, dtype=np.float32)
        mask[:real] = 1.0
        batch["mask"] = mask
        yield batch
