"""Synthetic sequence data sets: targets follow from the sources, BOS stays free, bad options
are clear errors."""

import numpy as np
import pytest

from jaxdl.data import load_dataset
from jaxdl.registry import ConfigError


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_sequence_task_targets(task):
    ds = load_dataset("sequence_task", task=task, length=6, num_symbols=7, num_train=300,
                      num_eval=50, seed=3)
    assert ds.num_classes == 8 and ds.input_shape == (6,)
    for split in (ds.train, ds.eval):
        x, y = split["x"], split["y"]
        assert x.dtype == np.int32 and y.dtype == np.int32
        assert x.min() >= 1 and x.max() <= 7  # 0 is BOS, never a symbol
        for src, tgt in zip(x, y):
            expected = src[::-1] if task == "reverse" else sorted(src)
            np.testing.assert_array_equal(tgt, expected)
    assert not np.array_equal(ds.train["x"][:50], ds.eval["x"])
    again = load_dataset("sequence_task", task=task, length=6, num_symbols=7, num_train=300,
                         num_eval=50, seed=4)
    assert not np.array_equal(again.train["x"], ds.train["x"])


def test_recall_target_is_first_symbol():
    ds = load_dataset("recall", length=9, num_symbols=5, num_train=100, num_eval=20)
    np.testing.assert_array_equal(ds.train["y"], ds.train["x"][:, 0])
    assert ds.num_classes == 5 and ds.info["lag"] == 8


def test_bad_options_name_the_field():
    with pytest.raises(ConfigError, match="data.task='rotate'"):
        load_dataset("sequence_task", task="rotate")
    with pytest.raises(ConfigError, match="data.length"):
        load_dataset("sequence_task", length=0)
