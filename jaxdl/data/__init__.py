"""Data: data sets by name, verified data files, and deterministic host-side batching.

>>> from jaxdl.data import load_dataset, BatchIterator
>>> ds = load_dataset("digits")            # x float32 [n, 8, 8, 1], y int32 [n]
>>> batches = BatchIterator(ds.train, 32, seed=0)
>>> batch = next(batches)                  # {"x": [32, 8, 8, 1], "y": [32]}

Nothing here imports jax; arrays are numpy and stay on the host.
"""

from jaxdl.data import (  # noqa: F401  (importing them registers the data sets)
    images,
    sequences,  # sequence_task, recall, tinyshakespeare_streams
    text,
)
from jaxdl.data.dataset import DATASETS, Dataset, load_dataset
from jaxdl.data.files import DataError, find_data_file
from jaxdl.data.iterator import BatchIterator, eval_batches
from jaxdl.data.text import decode, encode

__all__ = [
    "DATASETS",
    "BatchIterator",
    "DataError",
    "Dataset",
    "decode",
    "encode",
    "eval_batches",
    "find_data_file",
    "load_dataset",
]
