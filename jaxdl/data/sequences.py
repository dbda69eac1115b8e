"""Synthetic sequence tasks: digit-sequence transduction for encoder-decoders, and a
long-range recall task for recurrent networks.

* ``sequence_task``: reverse or sort a random symbol sequence (Sutskever et al., 2014 used
  reversal to show how an encoder-decoder aligns; sorting needs content-based attention).
  Token ids: 0 is BOS (the decoder's start token, never in ``x`` or ``y``), symbols are
  ``1..num_symbols``. ``x``: int32 [n, length] source, ``y``: int32 [n, length] target;
  ``num_classes = num_symbols + 1``, ``input_shape = (length,)``.
* ``recall``: ``x`` int32 [n, length] random symbols ``0..num_symbols-1``, ``y`` int32 [n] is
  ``x[:, 0]``: the answer lies ``length - 1`` steps before the read-out, the setting where a
  vanilla RNN's gradient vanishes (Bengio et al., 1994; Hochreiter & Schmidhuber, 1997).

Train and held-out examples come from separate seeded streams; held-out sequences that also
occur in the train split are not removed (with 10 symbols and length 8 collisions are rare).
"""

from __future__ import annotations

import numpy as np

from jaxdl.data.dataset import DATASETS, Dataset, int_arg, make_dataset
from jaxdl.registry import ConfigError

BOS = 0
TASKS = ("reverse", "sort")


def _transduce(task: str, x: np.ndarray) -> np.ndarray:
    return x[:, ::-1] if task == "reverse" else np.sort(x, axis=1)


@DATASETS.register("sequence_task")
def sequence_task(*, task: str = "reverse", length: int = 8, num_symbols: int = 10,
                  num_train: int = 20_000, num_eval: int = 1_000, seed: int = 0) -> Dataset:
    """Reverse or sort sequences of ``length`` symbols drawn uniformly from 1..num_symbols."""
    if task not in TASKS:
        raise ConfigError(f"data.task={task!r}: expected one of {list(TASKS)}.")
    length = int_arg("data.length", length, low=1)
    num_symbols = int_arg("data.num_symbols", num_symbols, low=1)
    num_train = int_arg("data.num_train", num_train, low=1)
    num_eval = int_arg("data.num_eval", num_eval, low=1)
    seed = int_arg("data.seed", seed, low=0)
    splits = []
    for stream, n in ((0, num_train), (1, num_eval)):
        rng = np.random.default_rng([seed, stream])
        x = rng.integers(1, num_symbols + 1, size=(n, length)).astype(np.int32)
        splits.append({"x": x, "y": np.ascontiguousarray(_transduce(task, x))})
    return make_dataset("sequence_task", splits[0], splits[1], num_classes=num_symbols + 1,
                        input_shape=(length,), info={"task": task, "bos": BOS})


@DATASETS.register("recall")
def recall(*, length: int = 20, num_symbols: int = 8, num_train: int = 10_000,
           num_eval: int = 1_000, seed: int = 0) -> Dataset:
    """Recall the first of ``length`` random symbols (classes ``0..num_symbols-1``)."""
    length = int_arg("data.length", length, low=1)
    num_symbols = int_arg("data.num_symbols", num_symbols, low=2)
    num_train = int_arg("data.num_train", num_train, low=1)
    num_eval = int_arg("data.num_eval", num_eval, low=1)
    seed = int_arg("data.seed", seed, low=0)
    splits = []
    for stream, n in ((0, num_train), (1, num_eval)):
        rng = np.random.default_rng([seed, stream, 7])
        x = rng.integers(0, num_symbols, size=(n, length)).astype(np.int32)
        splits.append({"x": x, "y": x[:, 0].copy()})
    return make_dataset("recall", splits[0], splits[1], num_classes=num_symbols,
                        input_shape=(length,), info={"lag": length - 1})



@DATASETS.register("tinyshakespeare_streams")
def tinyshakespeare_streams(*, stream_rows: int = 32, eval_fraction: float = 0.1) -> Dataset:
    """Tiny Shakespeare as ``stream_rows`` contiguous character streams, for truncated BPTT
    with the recurrent state carried from one batch to the next (Williams & Peng, 1990).

    The train text is cut into ``stream_rows`` equal consecutive pieces of ``L`` characters:
    ``x`` int32 [stream_rows, L] (row r = characters ``r L .. (r+1) L - 1``), ``y`` the same
    shifted by one character, ``row`` int32 [stream_rows] = ``arange``. The held-out text gives
    as many rows of the same length ``L`` as it holds (at least one). Train with
    ``batch_size = stream_rows`` (every stream in every batch, in any order: ``row`` says which
    is which) and the ``tbptt_language_model`` objective, which walks the streams window by
    window; evaluation reads each held-out row whole, from a zero state.
    """
    from jaxdl.data.files import find_data_file
    from jaxdl.data.text import (
        TINYSHAKESPEARE_FILE,
        TINYSHAKESPEARE_SHA256,
        TINYSHAKESPEARE_URL,
        encode,
    )

    stream_rows = int_arg("data.stream_rows", stream_rows, low=1)
    if not 0.0 < eval_fraction < 1.0:
        raise ConfigError(f"data.eval_fraction={eval_fraction}: expected 0 < value < 1.")
    path = find_data_file(TINYSHAKESPEARE_FILE, sha256=TINYSHAKESPEARE_SHA256,
                          urls=[TINYSHAKESPEARE_URL])
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    vocab = "".join(sorted(set(text)))
    tokens = encode(text, vocab)
    n_train = int(len(tokens) * (1.0 - eval_fraction))
    length = (n_train - 1) // stream_rows
    eval_rows = (len(tokens) - n_train - 1) // max(length, 1)
    if length < 1 or eval_rows < 1:
        raise ConfigError(f"data.stream_rows={stream_rows} with eval_fraction={eval_fraction}: "
                          f"streams of {length} characters leave no held-out row; use more rows.")

    def rows(start: int, count: int) -> dict[str, np.ndarray]:
        x = tokens[start:start + count * length].reshape(count, length)
        y = tokens[start + 1:start + count * length + 1].reshape(count, length)
        return {"x": x, "y": y, "row": np.arange(count, dtype=np.int32)}

    return make_dataset("tinyshakespeare_streams", rows(0, stream_rows),
                        rows(n_train, eval_rows), num_classes=len(vocab),
                        input_shape=(length,), info={"vocab": vocab, "stream_length": length})
