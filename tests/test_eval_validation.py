"""Validation protocols: folds partition the data and are stratified; nested CV."""

import numpy as np
import pytest

from jaxdl import eval as E


def test_kfold_partitions_the_data():
    folds = E.kfold(103, 5, seed=3)
    held = np.concatenate([va for _, va in folds])
    np.testing.assert_array_equal(np.sort(held), np.arange(103))
    for train, val in folds:
        assert np.intersect1d(train, val).size == 0 and train.size + val.size == 103
        assert val.size in (20, 21)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, E.kfold(103, 5, seed=3)))


def test_stratified_kfold_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [50, 30, 17])
    folds = E.stratified_kfold(labels, 5, seed=0)
    held = np.concatenate([va for _, va in folds])
    np.testing.assert_array_equal(np.sort(held), np.arange(labels.size))
    for _, val in folds:
        counts = np.bincount(labels[val], minlength=3)
        assert counts[0] == 10 and counts[1] == 6 and counts[2] in (3, 4)
    with pytest.raises(ValueError, match="k=18"):
        E.stratified_kfold(labels, 18)


def test_stratified_split_and_time_ordered_split():
    labels = np.repeat(np.arange(4), [40, 20, 20, 20])
    train, held = E.stratified_split(labels, 0.25, seed=1)
    assert np.intersect1d(train, held).size == 0 and train.size + held.size == 100
    np.testing.assert_array_equal(np.bincount(labels[held]), [10, 5, 5, 5])
    train, held = E.time_ordered_split(100, 0.2, gap=5)
    assert train.max() < held.min() - 5 and held.size == 20 and train.size == 75
    with pytest.raises(ValueError, match="eval_fraction"):
        E.time_ordered_split(10, 1.5)


def test_nested_cv_selects_the_best_value_and_is_unbiased():
    # Nearest-centroid classifier with a shrinkage hyperparameter on noisy 2-class data.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    x = rng.normal(size=(120, 5)) + 0.8 * labels[:, None]

    def fit_and_score(train, test, shrink):
        centroids = np.stack([x[train][labels[train] == c].mean(0) * shrink for c in (0, 1)])
        predicted = np.argmin(((x[test, None] - centroids) ** 2).sum(-1), axis=1)
        return float(np.mean(predicted == labels[test]))

    result = E.nested_cross_validation(fit_and_score, labels, [0.0, 1.0], outer_k=4, inner_k=3)
    # shrink=0 puts both centroids at the origin: chance; shrink=1 is the real classifier.
    assert result.chosen == [1.0] * 4
    assert result.inner_scores.shape == (4, 2)
    assert np.all(result.inner_scores[:, 1] > result.inner_scores[:, 0])
    assert 0.7 < result.estimate <= 1.0
