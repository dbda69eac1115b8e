"""Validation protocols: index splits for held-out estimates that do not leak.

All functions return integer index arrays into the data set and are deterministic for a
seed (``numpy.random.default_rng``):

* :func:`stratified_split`: one train/held-out split keeping every class's proportion;
* :func:`kfold` and :func:`stratified_kfold`: ``k`` disjoint validation folds that cover
  the data exactly once (Stone, 1974; stratification: Kohavi, 1995);
* :func:`nested_cross_validation`: an outer k-fold estimates the error of the *whole*
  procedure "choose the hyperparameter by inner k-fold, then refit", which a single
  cross-validation that also selects the hyperparameter would bias low (Varma & Simon,
  2006; Cawley & Talbot, 2010);
* :func:`time_ordered_split`: train strictly before held-out, with an optional gap, so no
  future information leaks into training (forward-chaining evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

Fold = tuple[np.ndarray, np.ndarray]  # (train indices, validation indices)


def _labels(labels: Any) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels: expected a non-empty 1-D array, got shape {labels.shape}.")
    return labels


def stratified_split(labels: Any, eval_fraction: float, seed: int = 0) -> Fold:
    """Split indices so each class contributes ``round(eval_fraction * n_class)`` held-out
    examples (at least one training example per class is kept)."""
    labels = _labels(labels)
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction={eval_fraction}: expected 0 < value < 1.")
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_eval = min(int(round(eval_fraction * members.size)), members.size - 1)
        held_out.append(members[:n_eval])
        train.append(members[n_eval:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held_out))


def kfold(num_examples: int, k: int, seed: int = 0, shuffle: bool = True) -> list[Fold]:
    """``k`` folds of ``num_examples``: fold sizes differ by at most one."""
    if not isinstance(k, int) or not 2 <= k <= num_examples:
        raise ValueError(f"k={k!r}: expected an integer with 2 <= k <= {num_examples} examples.")
    order = np.random.default_rng(seed).permutation(num_examples) if shuffle else \
        np.arange(num_examples)
    parts = np.array_split(order, k)
    return [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(parts[i]))
            for i in range(k)]


def stratified_kfold(labels: Any, k: int, seed: int = 0) -> list[Fold]:
    """``k`` folds where every class is dealt round-robin, so each fold holds
    ``floor`` or ``ceil`` of ``n_class / k`` examples of every class."""
    labels = _labels(labels)
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    if not isinstance(k, int) or k < 2 or k > counts.min():
        raise ValueError(f"k={k!r}: expected an integer with 2 <= k <= {counts.min()} (the "
                         "smallest class size).")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(labels.size, np.int64)
    offset = 0
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        fold_of[members] = (offset + np.arange(members.size)) % k  # continue the deal
        offset += members.size
    return [(np.flatnonzero(fold_of != i), np.flatnonzero(fold_of == i)) for i in range(k)]


def time_ordered_split(num_examples: int, eval_fraction: float, gap: int = 0) -> Fold:
    """Train on the first examples, hold out the last ``eval_fraction``; ``gap`` examples
    between them are dropped (e.g. a label horizon that overlaps both sides)."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction={eval_fraction}: expected 0 < value < 1.")
    n_eval = max(1, int(round(eval_fraction * num_examples)))
    n_train = num_examples - n_eval - gap
    if gap < 0 or n_train < 1:
        raise ValueError(f"gap={gap}: expected 0 <= gap leaving at least one training example "
                         f"of {num_examples}.")
    return np.arange(n_train), np.arange(num_examples - n_eval, num_examples)


class NestedResult(NamedTuple):
    outer_scores: np.ndarray  # [outer_k] score of the refit model on each outer test fold
    chosen: list[Any]  # [outer_k] hyperparameter chosen by the inner cross-validation
    inner_scores: np.ndarray  # [outer_k, num_candidates] mean inner validation score

    @property
    def estimate(self) -> float:
        """The nested-CV estimate of the procedure's score (mean over outer folds)."""
        return float(self.outer_scores.mean())


def nested_cross_validation(fit_and_score: Callable[[np.ndarray, np.ndarray, Any], float],
                            labels: Any, candidates: Sequence[Any], *, outer_k: int = 5,
                            inner_k: int = 3, seed: int = 0,
                            higher_is_better: bool = True) -> NestedResult:
    """Nested stratified cross-validation over one hyperparameter.

    Args:
      fit_and_score: ``(train_indices, test_indices, value) -> score``; trains on the first
        indices with hyperparameter ``value`` and scores on the second.
      labels: ``[n]`` class labels (for stratification).
      candidates: the hyperparameter values to choose from.
    """
    labels = _labels(labels)
    if not candidates:
        raise ValueError("candidates: expected at least one hyperparameter value.")
    pick = np.argmax if higher_is_better else np.argmin
    outer_scores, chosen, inner_table = [], [], []
    for fold, (outer_train, outer_test) in enumerate(stratified_kfold(labels, outer_k, seed)):
        inner = stratified_kfold(labels[outer_train], inner_k, seed + 1 + fold)
        means = [np.mean([fit_and_score(outer_train[tr], outer_train[va], value)
                          for tr, va in inner]) for value in candidates]
        best = candidates[int(pick(means))]
        chosen.append(best)
        inner_table.append(means)
        outer_scores.append(fit_and_score(outer_train, outer_test, best))
    return NestedResult(np.asarray(outer_scores, np.float64), chosen,
                        np.asarray(inner_table, np.float64))
