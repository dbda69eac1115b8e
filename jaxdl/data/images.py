"""Image classification data sets: ``digits`` (embedded), ``mnist`` (IDX), ``synthetic``."""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import zlib
from collections.abc import Sequence

import numpy as np

from jaxdl.data.dataset import (
    DATASETS,
    Dataset,
    fraction_arg,
    int_arg,
    make_dataset,
    stratified_order,
)
from jaxdl.data.files import DataError, find_data_file
from jaxdl.registry import ConfigError

# --------------------------------------------------------------------------- digits


@DATASETS.register("digits")
def digits(*, eval_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """scikit-learn's embedded 8x8 handwritten digits (1,797 images; no download).

    Returns train/eval with x float32 [n, 8, 8, 1] in [0, 1] and y int32 [n] in 0..9; the
    held-out split is stratified, ``round(eval_fraction * 1797)`` examples, chosen by
    ``split_seed``. ``info`` holds ``train_indices``/``eval_indices`` into the original order.
    """
    eval_fraction = fraction_arg("eval_fraction", eval_fraction)
    split_seed = int_arg("split_seed", split_seed, low=0)
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[..., None]
    y = np.asarray(bunch.target, dtype=np.int32)
    n = y.shape[0]
    n_eval = round(eval_fraction * n)
    if not 1 <= n_eval <= n - 1:
        raise ConfigError(
            f"eval_fraction={eval_fraction} leaves {n_eval} of {n} examples held out; "
            "it must leave at least one example in each split"
        )
    order = stratified_order(y, split_seed)
    eval_idx, train_idx = np.sort(order[:n_eval]), np.sort(order[n_eval:])
    return make_dataset(
        "digits",
        {"x": x[train_idx], "y": y[train_idx]},
        {"x": x[eval_idx], "y": y[eval_idx]},
        num_classes=10,
        input_shape=(8, 8, 1),
        info={
            "source": "sklearn.datasets.load_digits",
            "split_seed": split_seed,
            "train_indices": train_idx,
            "eval_indices": eval_idx,
        },
    )


# --------------------------------------------------------------------------- mnist

MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
# sha256 of the gzipped files (sha256sum format), as listed by tensorflow/datasets
# (tensorflow_datasets/url_checksums/mnist.txt); the t10k values also match the
# checksums published with the shared data folder.
_MNIST_SHA256SUMS = """
    440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
    3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
    8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
    f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
"""
MNIST_SHA256 = {name: sha for sha, name in map(str.split, _MNIST_SHA256SUMS.strip().splitlines())}
MNIST_SOURCES = ("official", "test_split")
IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension


def read_idx(path: str | os.PathLike[str], *, expected_magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or not).

    The header is a big-endian uint32 magic number ``0x08_00 + ndim`` (2049 for 1-D labels,
    2051 for 3-D images) followed by ``ndim`` big-endian uint32 dimensions.

    Returns:
      uint8 array with the header's dimensions, e.g. [n, 28, 28] or [n].

    Raises:
      DataError naming the file if it cannot be decompressed, the magic number is not
      ``expected_magic``, or the payload size does not match the dimensions.
    """
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {str(path)!r}: {e}") from e
    if len(raw) < 4:
        raise DataError(f"IDX file {str(path)!r} is too short ({len(raw)} bytes) for a header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"IDX file {str(path)!r} has magic number {magic}, expected {expected_magic}; "
            "it is not the expected MNIST file (or is corrupted)"
        )
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"IDX file {str(path)!r} ends inside its header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = len(raw) - header_len
    if payload != math.prod(dims):
        raise DataError(
            f"IDX file {str(path)!r} declares dimensions {dims} ({math.prod(dims)} bytes) "
            f"but holds {payload} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _mnist_path(filename: str) -> pathlib.Path:
    return find_data_file(
        f"mnist/{filename}",
        sha256=MNIST_SHA256[filename],
        urls=[mirror + filename for mirror in MNIST_MIRRORS],
    )


def _mnist_pair(prefix: str) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Images uint8 [n, 28, 28] and labels uint8 [n] of the ``train`` or ``t10k`` files."""
    image_file, label_file = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    image_path, label_path = _mnist_path(image_file), _mnist_path(label_file)
    images = read_idx(image_path, expected_magic=IDX_IMAGES_MAGIC)
    labels = read_idx(label_path, expected_magic=IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{str(image_path)!r} holds images of shape {images.shape[1:]}, not 28x28")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{str(image_path)!r} holds {images.shape[0]} images but "
            f"{str(label_path)!r} holds {labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{str(label_path)!r} holds label {labels.max()}, expected 0..9")
    return images, labels, {image_file: str(image_path), label_file: str(label_path)}


@DATASETS.register("mnist")
def mnist(
    *,
    source: str = "test_split",
    train_size: int = 8000,
    eval_size: int = 2000,
    split_seed: int = 0,
) -> Dataset:
    """MNIST digits from the IDX files; x float32 [n, 28, 28, 1] in [0, 1], y int32 [n].

    Args:
      source: ``"test_split"`` splits the official 10k test files (``t10k-*``) into
        ``train_size`` train and ``eval_size`` held-out examples (disjoint, stratified);
        ``"official"`` trains on ``train_size`` of the 60k training files and holds out
        ``eval_size`` of the 10k test files (use 60000 and 10000 for the full splits).
      train_size: number of training examples.
      eval_size: number of held-out examples.
      split_seed: seed of the (stratified) choice of examples.
    """
    if source not in MNIST_SOURCES:
        raise ConfigError(
            f"source={source!r} is not an MNIST source; expected one of {list(MNIST_SOURCES)}"
        )
    split_seed = int_arg("split_seed", split_seed, low=0)
    if source == "test_split":
        train_size = int_arg("train_size", train_size, low=1)
        eval_size = int_arg("eval_size", eval_size, low=1)
        if train_size + eval_size > 10000:
            raise ConfigError(
                f"train_size + eval_size = {train_size} + {eval_size} = {train_size + eval_size} "
                "exceeds the 10000 examples of the MNIST test files used by "
                "source='test_split'; lower train_size or eval_size, or use source='official'"
            )
        images, labels, files = _mnist_pair("t10k")
        order = stratified_order(labels, split_seed)
        eval_idx = np.sort(order[:eval_size])
        train_idx = np.sort(order[eval_size : eval_size + train_size])
        train_images, train_labels = images, labels
    else:
        train_size = int_arg("train_size", train_size, low=1, high=60000)
        eval_size = int_arg("eval_size", eval_size, low=1, high=10000)
        train_images, train_labels, files = _mnist_pair("train")
        images, labels, test_files = _mnist_pair("t10k")
        files.update(test_files)
        train_idx = np.sort(stratified_order(train_labels, split_seed)[:train_size])
        eval_idx = np.sort(stratified_order(labels, split_seed)[:eval_size])

    def examples(imgs: np.ndarray, lbls: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        x = imgs[idx].astype(np.float32)[..., None]
        x *= np.float32(1.0 / 255.0)
        return {"x": x, "y": lbls[idx].astype(np.int32)}

    return make_dataset(
        "mnist",
        examples(train_images, train_labels, train_idx),
        examples(images, labels, eval_idx),
        num_classes=10,
        input_shape=(28, 28, 1),
        info={
            "source": source,
            "files": files,
            "split_seed": split_seed,
            "train_indices": train_idx,
            "eval_indices": eval_idx,
        },
    )


# --------------------------------------------------------------------------- synthetic


@DATASETS.register("synthetic")
def synthetic(
    *,
    num_train: int = 256,
    num_eval: int = 64,
    input_shape: tuple[int, ...] = (8, 8, 1),
    num_classes: int = 4,
    seed: int = 0,
) -> Dataset:
    """A tiny, learnable classification problem for tests (no files).

    Class c's inputs are ``mean_c + N(0, 1)`` noise, with ``mean_c ~ N(0, 1)`` per
    element, so classes are well separated for inputs of a few dozen elements. Labels
    are balanced within each split. x float32 [n, *input_shape], y int32 [n].
    """
    num_train = int_arg("num_train", num_train, low=1)
    num_eval = int_arg("num_eval", num_eval, low=1)
    num_classes = int_arg("num_classes", num_classes, low=2)
    seed = int_arg("seed", seed, low=0)
    if isinstance(input_shape, (int, np.integer)) or not isinstance(input_shape, Sequence):
        raise ConfigError(f"input_shape must be a tuple of positive ints, got {input_shape!r}")
    shape = tuple(int_arg(f"input_shape[{i}]", d, low=1) for i, d in enumerate(input_shape))
    if not shape:
        raise ConfigError("input_shape must have at least one dimension")
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, *shape), dtype=np.float32)

    def split(n: int) -> dict[str, np.ndarray]:
        y = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
        x = means[y] + rng.standard_normal((n, *shape), dtype=np.float32)
        return {"x": x, "y": y}

    train = split(num_train)
    return make_dataset(
        "synthetic",
        train,
        split(num_eval),
        num_classes,
        shape,
        {"seed": seed, "class_means": means},
    )
