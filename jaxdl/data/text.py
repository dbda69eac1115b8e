"""Character-level text: ``tinyshakespeare``, with ``encode``/``decode`` over a vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxdl.data.dataset import (
    DATASETS,
    Dataset,
    fraction_arg,
    int_arg,
    make_dataset,
)
from jaxdl.data.files import find_data_file
from jaxdl.registry import ConfigError

# --------------------------------------------------------------------------- text

TINYSHAKESPEARE_FILE = "tinyshakespeare.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def encode(text: str, vocab: str) -> np.ndarray:
    """Character ids of ``text``: int32 [len(text)], ``ids[i] = vocab.index(text[i])``.

    Raises ValueError naming the characters of ``text`` that are not in ``vocab``.
    """
    codes, vocab_codes = _codepoints(text), _codepoints(vocab)
    if np.unique(vocab_codes).size != vocab_codes.size:
        raise ValueError("vocab must not repeat a character")
    if vocab_codes.size == 0:
        if codes.size:
            raise ValueError("vocab is empty but text is not")
        return np.zeros(0, dtype=np.int32)
    sorter = np.argsort(vocab_codes)
    pos = np.searchsorted(vocab_codes, codes, sorter=sorter).clip(max=vocab_codes.size - 1)
    ids = sorter[pos]
    unknown = vocab_codes[ids] != codes
    if unknown.any():
        missing = sorted({chr(c) for c in codes[unknown][:1000]})
        raise ValueError(f"text holds characters not in vocab: {missing[:20]!r}")
    return ids.astype(np.int32)


def decode(ids: Sequence[int] | np.ndarray, vocab: str) -> str:
    """The text of character ids ``ids`` (any integer dtype, shape [n]) under ``vocab``."""
    ids = np.asarray(ids)
    if ids.ndim == 1 and ids.size == 0:
        return ""
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array, got shape {ids.shape} {ids.dtype}")
    if ids.min() < 0 or ids.max() >= len(vocab):
        raise ValueError(f"ids must be in [0, {len(vocab)}), got range [{ids.min()}, {ids.max()}]")
    return "".join(np.asarray(list(vocab), dtype="<U1")[ids].tolist())


def _windows(tokens: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
    n = (tokens.shape[0] - 1) // seq_len
    return {
        "x": tokens[: n * seq_len].reshape(n, seq_len),
        "y": tokens[1 : n * seq_len + 1].reshape(n, seq_len),
    }


@DATASETS.register("tinyshakespeare")
def tinyshakespeare(*, seq_len: int = 128, eval_fraction: float = 0.1) -> Dataset:
    """Character-level Tiny Shakespeare for next-character prediction.

    The vocabulary is the sorted set of the text's characters (65). The first
    ``1 - eval_fraction`` of the text is train, the rest held out (contiguous, so no window
    crosses the boundary). Examples are non-overlapping windows: x int32 [n, seq_len] =
    ``tokens[i : i + seq_len]`` and y int32 [n, seq_len] = ``tokens[i + 1 : i + seq_len + 1]``
    for ``i = 0, seq_len, 2 * seq_len, ...``. ``info["vocab"]`` is the vocabulary string.
    """
    seq_len = int_arg("seq_len", seq_len, low=1)
    eval_fraction = fraction_arg("eval_fraction", eval_fraction)
    path = find_data_file(
        TINYSHAKESPEARE_FILE, sha256=TINYSHAKESPEARE_SHA256, urls=[TINYSHAKESPEARE_URL]
    )
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    vocab = "".join(sorted(set(text)))
    tokens = encode(text, vocab)
    n_train = int(len(text) * (1.0 - eval_fraction))
    train, held_out = _windows(tokens[:n_train], seq_len), _windows(tokens[n_train:], seq_len)
    if train["x"].shape[0] == 0 or held_out["x"].shape[0] == 0:
        raise ConfigError(
            f"seq_len={seq_len} with eval_fraction={eval_fraction} leaves a split without a "
            f"single window ({n_train} train and {len(text) - n_train} held-out characters); "
            "lower seq_len or change eval_fraction"
        )
    return make_dataset(
        "tinyshakespeare",
        train,
        held_out,
        num_classes=len(vocab),
        input_shape=(seq_len,),
        info={
            "vocab": vocab,
            "file": str(path),
            "train_chars": (0, n_train),
            "eval_chars": (n_train, len(text)),
        },
    )
