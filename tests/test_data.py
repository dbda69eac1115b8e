"""Tests for jaxdl.data: data files, data sets and batch iterators. No test touches the network."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data import (
    DATASETS,
    BatchIterator,
    DataError,
    Dataset,
    decode,
    encode,
    eval_batches,
    files,
    find_data_file,
    load_dataset,
)
from jaxdl.data import images as image_sets
from jaxdl.data import text as text_sets
from jaxdl.registry import ConfigError

MNIST_T10K = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SHAKESPEARE_URL = text_sets.TINYSHAKESPEARE_URL


# The shared data folder as configured when the tests start (tests below point the
# environment variable elsewhere).
SHARED_DATA_DIR = os.environ.get("JAXDL_DATA_DIR")


def shared_file(relpath: str) -> pathlib.Path | None:
    """The real data file under the starting $JAXDL_DATA_DIR, or None if it is not there."""
    path = pathlib.Path(SHARED_DATA_DIR) / relpath if SHARED_DATA_DIR else None
    return path if path is not None and path.is_file() else None


needs_mnist = pytest.mark.skipif(
    any(shared_file(f"mnist/{f}") is None for f in MNIST_T10K),
    reason="MNIST t10k files are not in $JAXDL_DATA_DIR (set it to a folder holding mnist/)",
)
needs_shakespeare = pytest.mark.skipif(
    shared_file("tinyshakespeare.txt") is None,
    reason="tinyshakespeare.txt is not in $JAXDL_DATA_DIR",
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_idx(path: pathlib.Path, array: np.ndarray, magic: int | None = None) -> pathlib.Path:
    arr = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 + arr.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())
    return path


@pytest.fixture
def offline_dirs(tmp_path, monkeypatch):
    """Empty data and cache folders, and a fetch that fails like a machine with no network."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    cache.mkdir()
    monkeypatch.setenv("JAXDL_DATA_DIR", str(data))
    monkeypatch.setenv("JAXDL_CACHE_DIR", str(cache))
    calls = []

    def no_network(url, dest):
        calls.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(files, "fetch_url", no_network)
    return data, cache, calls


def leftover_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_range():
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset) and ds.name == "digits"
    assert ds.num_classes == 10 and ds.input_shape == (8, 8, 1)
    assert ds.train["x"].shape == (1438, 8, 8, 1) and ds.eval["x"].shape == (359, 8, 8, 1)
    assert ds.train["y"].shape == (1438,) and ds.eval["y"].shape == (359,)
    for split in (ds.train, ds.eval):
        assert split["x"].dtype == np.float32 and split["y"].dtype == np.int32
        assert split["x"].min() == 0.0 and split["x"].max() == 1.0
        assert set(np.unique(split["y"])) == set(range(10))


def test_digits_split_is_deterministic_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    make = DATASETS.get("digits")
    a, b = make(), make()  # uncached: two independent builds
    for key in ("x", "y"):
        np.testing.assert_array_equal(a.train[key], b.train[key])
        np.testing.assert_array_equal(a.eval[key], b.eval[key])
    train_idx, eval_idx = a.info["train_indices"], a.info["eval_indices"]
    assert not set(train_idx) & set(eval_idx)
    assert sorted(np.concatenate([train_idx, eval_idx]).tolist()) == list(range(1797))
    bunch = load_digits()
    np.testing.assert_array_equal(a.eval["y"], bunch.target[eval_idx])
    np.testing.assert_allclose(a.eval["x"][..., 0], bunch.images[eval_idx] / 16.0)
    overall = np.bincount(bunch.target, minlength=10) / 1797
    for split in (a.train, a.eval):
        share = np.bincount(split["y"], minlength=10) / len(split["y"])
        assert np.abs(share - overall).max() < 0.006  # within ~2 examples per class
    other = make(split_seed=1)
    assert not np.array_equal(other.info["eval_indices"], eval_idx)
    assert make(eval_fraction=0.5).eval["y"].shape == (898,)


def test_loaded_arrays_are_read_only_and_cache_cannot_be_corrupted():
    first = load_dataset("synthetic", num_train=32)
    with pytest.raises(ValueError, match="read-only"):
        first.train["x"][0] = 1.0
    first.train["x"] = np.zeros(1)  # replacing a dict entry only touches this copy
    first.info["seed"] = 99
    again = load_dataset("synthetic", num_train=32)
    assert again.train["x"].shape == (32, 8, 8, 1) and again.info["seed"] == 0
    assert again.train["y"] is load_dataset("synthetic", num_train=32).train["y"]  # cached
    with pytest.raises(dataclasses.FrozenInstanceError):
        again.num_classes = 3


def test_load_dataset_rejects_unknown_names_and_options():
    with pytest.raises(ConfigError, match="digitz.*Did you mean 'digits'"):
        load_dataset("digitz")
    with pytest.raises(ConfigError, match="eval_fractoin"):
        load_dataset("digits", eval_fractoin=0.1)


@pytest.mark.parametrize(
    "name, kwargs, field",
    [
        ("digits", {"eval_fraction": 0.0}, "eval_fraction"),
        ("digits", {"eval_fraction": 1.0}, "eval_fraction"),
        ("digits", {"split_seed": -1}, "split_seed"),
        ("mnist", {"train_size": 0}, "train_size"),
        ("mnist", {"eval_size": 2.5}, "eval_size"),
        ("mnist", {"source": "official", "train_size": 60001}, "train_size"),
        ("tinyshakespeare", {"seq_len": 0}, "seq_len"),
        ("tinyshakespeare", {"eval_fraction": 1.5}, "eval_fraction"),
        ("synthetic", {"num_train": 0}, "num_train"),
        ("synthetic", {"num_classes": 1}, "num_classes"),
        ("synthetic", {"input_shape": (8, 0)}, "input_shape"),
    ],
)
def test_arguments_are_validated_before_any_work(offline_dirs, name, kwargs, field):
    _, _, fetches = offline_dirs
    with pytest.raises(ValueError, match=field):
        DATASETS.get(name)(**kwargs)
    assert fetches == []  # rejected before looking for files


# --------------------------------------------------------------------------- mnist


@needs_mnist
def test_mnist_test_split_from_shared_files():
    ds = load_dataset("mnist")
    assert ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    assert ds.train["x"].shape == (8000, 28, 28, 1) and ds.train["y"].shape == (8000,)
    assert ds.eval["x"].shape == (2000, 28, 28, 1) and ds.eval["y"].shape == (2000,)
    for split in (ds.train, ds.eval):
        assert split["x"].dtype == np.float32 and split["y"].dtype == np.int32
        assert split["x"].min() == 0.0 and split["x"].max() == 1.0
        assert split["y"].min() == 0 and split["y"].max() == 9
        assert len(np.unique(split["y"])) == 10
    assert not set(ds.info["train_indices"]) & set(ds.info["eval_indices"])
    # determinism: a fresh, uncached build gives the same split
    again = DATASETS.get("mnist")()
    np.testing.assert_array_equal(again.train["y"], ds.train["y"])
    np.testing.assert_array_equal(again.eval["x"], ds.eval["x"])
    other = DATASETS.get("mnist")(split_seed=1)
    assert not np.array_equal(other.info["eval_indices"], ds.info["eval_indices"])
    # stratified: each class's share of the held-out split matches the train split's
    share = [np.bincount(s["y"], minlength=10) / len(s["y"]) for s in (ds.train, ds.eval)]
    assert np.abs(share[0] - share[1]).max() < 0.003


@pytest.mark.parametrize(
    "train_size, eval_size", [(9000, 2000), (8001, 2000), (10000, 1), (1, 10000)]
)
def test_mnist_test_split_sizes_must_fit(train_size, eval_size):
    with pytest.raises(ConfigError, match=r"train_size \+ eval_size"):
        load_dataset("mnist", train_size=train_size, eval_size=eval_size)


def test_mnist_unknown_source():
    with pytest.raises(ValueError, match=r"source='train'.*\['official', 'test_split'\]"):
        load_dataset("mnist", source="train")


def test_mnist_official_source_with_fake_files(offline_dirs, monkeypatch):
    data, _, _ = offline_dirs
    rng = np.random.default_rng(0)
    fakes = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (120, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(120) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (40, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(40) % 10,
    }
    for name, array in fakes.items():
        path = write_idx(data / "mnist" / name, array)
        monkeypatch.setitem(image_sets.MNIST_SHA256, name, files.file_sha256(path))
    ds = load_dataset("mnist", source="official", train_size=100, eval_size=40)
    assert ds.train["x"].shape == (100, 28, 28, 1) and ds.eval["x"].shape == (40, 28, 28, 1)
    idx = ds.info["train_indices"]
    np.testing.assert_array_equal(ds.train["y"], fakes["train-labels-idx1-ubyte.gz"][idx])
    np.testing.assert_allclose(
        ds.train["x"][..., 0], fakes["train-images-idx3-ubyte.gz"][idx] / 255.0, rtol=1e-6
    )
    np.testing.assert_array_equal(ds.eval["y"], fakes["t10k-labels-idx1-ubyte.gz"])  # all 40
    assert np.bincount(ds.train["y"]).tolist() == [10] * 10  # stratified subset


def test_mnist_official_source_reports_missing_train_files(offline_dirs):
    data, cache, fetches = offline_dirs
    with pytest.raises(DataError) as err:
        load_dataset("mnist", source="official")
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert str(data / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert (
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz" in message
    )
    assert image_sets.MNIST_SHA256["train-images-idx3-ubyte.gz"] in message
    assert fetches[0].startswith("https://storage.googleapis.com/")  # mirror order
    assert fetches[1].startswith("https://ossci-datasets.s3.amazonaws.com/")
    assert leftover_files(cache) == []


# --------------------------------------------------------------------------- IDX parser


def test_read_idx_round_trip_plain_and_gzipped(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    gz = write_idx(tmp_path / "a.gz", images)
    np.testing.assert_array_equal(image_sets.read_idx(gz, expected_magic=2051), images)
    plain = tmp_path / "b.idx"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    np.testing.assert_array_equal(image_sets.read_idx(plain, expected_magic=2051), images)


def test_read_idx_bad_magic_names_the_file(tmp_path):
    path = write_idx(tmp_path / "labels-bad.gz", np.zeros(5), magic=2051 + 7)
    with pytest.raises(DataError, match=r"labels-bad\.gz.*magic number 2058, expected 2049"):
        image_sets.read_idx(path, expected_magic=2049)


def test_read_idx_rejects_wrong_sizes_and_broken_gzip(tmp_path):
    path = tmp_path / "short.gz"
    header = (2049).to_bytes(4, "big") + (10).to_bytes(4, "big")
    path.write_bytes(gzip.compress(header + bytes(7)))
    with pytest.raises(DataError, match=r"short\.gz.*declares dimensions \(10,\)"):
        image_sets.read_idx(path, expected_magic=2049)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(header + bytes(10))[:-12])
    with pytest.raises(DataError, match=r"broken\.gz"):
        image_sets.read_idx(broken, expected_magic=2049)


# --------------------------------------------------------------------------- text


def test_encode_decode_round_trip():
    vocab = "\n !abc"
    ids = encode("abc! cab\n", vocab)
    assert ids.dtype == np.int32 and ids.tolist() == [3, 4, 5, 2, 1, 5, 3, 4, 0]
    assert decode(ids, vocab) == "abc! cab\n"
    assert decode([], vocab) == "" and encode("", vocab).shape == (0,)
    with pytest.raises(ValueError, match="'z'"):
        encode("abz", vocab)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        decode([6], vocab)


@needs_shakespeare
def test_tinyshakespeare_windows_and_split():
    text = shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    ds = load_dataset("tinyshakespeare")
    vocab = ds.info["vocab"]
    assert len(vocab) == 65 == ds.num_classes and vocab == "".join(sorted(set(text)))
    assert ds.input_shape == (128,)
    x, y = ds.train["x"], ds.train["y"]
    assert x.dtype == np.int32 and y.dtype == np.int32 and x.shape == y.shape
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])  # y is x shifted by one
    np.testing.assert_array_equal(y[:-1, -1], x[1:, 0])  # windows are contiguous, no overlap
    assert decode(x[0], vocab) == text[:128]
    assert decode(x[5], vocab) == text[5 * 128 : 6 * 128]
    assert encode(decode(x[7], vocab), vocab).tolist() == x[7].tolist()
    n_train = ds.info["train_chars"][1]
    assert n_train == int(len(text) * 0.9) and ds.info["eval_chars"] == (n_train, len(text))
    assert x.shape[0] * 128 + 1 <= n_train  # every train target lies in the train text
    assert decode(ds.eval["x"][0], vocab) == text[n_train : n_train + 128]
    assert ds.eval["x"].shape[0] == (len(text) - n_train - 1) // 128
    short = load_dataset("tinyshakespeare", seq_len=1, eval_fraction=0.5)
    assert short.train["x"].shape == (int(len(text) * 0.5) - 1, 1)


# --------------------------------------------------------------------------- data files


@needs_mnist
@pytest.mark.parametrize("damage", ["flip_byte", "truncate"])
def test_corrupted_data_file_raises_with_path_and_checksums(offline_dirs, damage):
    data, _, fetches = offline_dirs
    (data / "mnist").mkdir()
    for name in MNIST_T10K:
        shutil.copy(shared_file(f"mnist/{name}"), data / "mnist" / name)
    bad = data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(bad.read_bytes())
    if damage == "flip_byte":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: len(raw) // 2]
    bad.chmod(0o644)
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    message = str(err.value)
    assert str(bad) in message
    assert image_sets.MNIST_SHA256["t10k-labels-idx1-ubyte.gz"] in message
    assert sha256_bytes(bytes(raw)) in message
    assert "Delete or replace" in message
    assert fetches == []  # a bad local file is reported, not silently re-downloaded


def test_verification_is_cached_per_path_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"hello")
    good = sha256_bytes(b"hello")
    hashed = []
    real_hash = files.file_sha256
    monkeypatch.setattr(files, "file_sha256", lambda p: hashed.append(p) or real_hash(p))
    files.verify_file(path, good)
    files.verify_file(path, good)
    assert len(hashed) == 1
    path.write_bytes(b"jello")  # same size, new mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="blob.bin"):
        files.verify_file(path, good)
    assert len(hashed) == 2


def test_missing_file_and_failed_download_says_where_to_put_it(offline_dirs):
    data, cache, fetches = offline_dirs
    with pytest.raises(DataError) as err:
        load_dataset("tinyshakespeare")
    message = str(err.value)
    assert str(data / "tinyshakespeare.txt") in message
    assert str(cache / "tinyshakespeare.txt") in message
    assert SHAKESPEARE_URL in message and text_sets.TINYSHAKESPEARE_SHA256 in message
    assert "no network in tests" in message
    assert fetches == [SHAKESPEARE_URL]
    assert leftover_files(cache) == []  # no partial download left behind


def test_missing_file_without_data_dir_names_the_variable(offline_dirs, monkeypatch):
    monkeypatch.delenv("JAXDL_DATA_DIR")
    with pytest.raises(DataError, match=r"\$JAXDL_DATA_DIR/x/y\.bin.*is not set"):
        find_data_file("x/y.bin", sha256="0" * 64, urls=["https://example.invalid/y.bin"])


def test_download_from_file_url_lands_in_cache_and_verifies(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("JAXDL_CACHE_DIR", str(cache))
    monkeypatch.delenv("JAXDL_DATA_DIR", raising=False)
    source = tmp_path / "server" / "blob.bin"
    source.parent.mkdir()
    source.write_bytes(b"payload " * 1000)
    sha = sha256_bytes(source.read_bytes())
    dead = (tmp_path / "server" / "missing.bin").as_uri()  # first mirror fails, second works
    path = find_data_file("sub/blob.bin", sha256=sha, urls=[dead, source.as_uri()])
    assert path == cache / "sub" / "blob.bin"
    assert path.read_bytes() == source.read_bytes()
    assert leftover_files(cache) == [path]  # the temporary file was renamed, not copied

    def must_not_fetch(url, dest):
        raise AssertionError("a verified cached file must not be downloaded again")

    monkeypatch.setattr(files, "fetch_url", must_not_fetch)
    assert find_data_file("sub/blob.bin", sha256=sha, urls=[dead]) == path


def test_download_with_wrong_content_leaves_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("JAXDL_CACHE_DIR", str(cache))
    monkeypatch.setenv("JAXDL_DATA_DIR", str(tmp_path / "nodata"))
    expected = sha256_bytes(b"the real thing")

    def fake_fetch(url, dest):
        pathlib.Path(dest).write_bytes(b"an impostor")

    monkeypatch.setattr(files, "fetch_url", fake_fetch)
    with pytest.raises(DataError) as err:
        find_data_file("blob.bin", sha256=expected, urls=["https://example.invalid/blob.bin"])
    message = str(err.value)
    assert expected in message and sha256_bytes(b"an impostor") in message
    assert not (cache / "blob.bin").exists()
    assert leftover_files(cache) == []


def test_data_dir_takes_precedence_and_bad_cache_copy_is_reported(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    for root in (data, cache):
        (root / "d").mkdir(parents=True)
        (root / "d" / "f.txt").write_bytes(b"content")
    monkeypatch.setenv("JAXDL_DATA_DIR", str(data))
    monkeypatch.setenv("JAXDL_CACHE_DIR", str(cache))
    sha = sha256_bytes(b"content")
    assert find_data_file("d/f.txt", sha256=sha) == data / "d" / "f.txt"
    (data / "d" / "f.txt").unlink()
    assert find_data_file("d/f.txt", sha256=sha) == cache / "d" / "f.txt"
    (cache / "d" / "f.txt").write_bytes(b"contenT!")
    with pytest.raises(DataError, match=str(cache / "d" / "f.txt")):
        find_data_file("d/f.txt", sha256=sha)
    with pytest.raises(ValueError, match="relpath"):
        find_data_file("../f.txt", sha256=sha)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_balanced_and_learnable():
    make = DATASETS.get("synthetic")
    a, b = make(), make()
    np.testing.assert_array_equal(a.train["x"], b.train["x"])
    assert not np.array_equal(make(seed=1).train["x"], a.train["x"])
    assert a.train["x"].shape == (256, 8, 8, 1) and a.train["x"].dtype == np.float32
    assert a.eval["y"].dtype == np.int32 and a.eval["y"].shape == (64,)
    assert np.bincount(a.train["y"]).tolist() == [64] * 4
    # a nearest-class-mean classifier fit on train must do well on eval
    flat = a.train["x"].reshape(256, -1)
    means = np.stack([flat[a.train["y"] == c].mean(0) for c in range(4)])
    dist = ((a.eval["x"].reshape(64, 1, -1) - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == a.eval["y"]).mean() > 0.9
    assert make(input_shape=[3], num_classes=3).train["x"].shape == (256, 3)


def test_package_import_is_light():
    code = "import sys, jaxdl.data; print(sorted({'jax', 'sklearn'} & set(sys.modules)))"
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- BatchIterator


def make_arrays(n: int) -> dict[str, np.ndarray]:
    return {
        "x": np.arange(n * 2, dtype=np.float32).reshape(n, 2),
        "y": np.arange(n, dtype=np.int32),
    }


def take_epoch(it: BatchIterator) -> list[np.ndarray]:
    return [next(it)["y"] for _ in range(it.steps_per_epoch)]


def test_each_epoch_is_a_permutation_and_epochs_differ():
    it = BatchIterator(make_arrays(20), 5, seed=3)
    assert it.steps_per_epoch == 4 and it.epoch == 0
    epochs = [np.concatenate(take_epoch(it)) for _ in range(3)]
    assert it.epoch == 3 and it.position == 0
    for e, order in enumerate(epochs):
        assert sorted(order.tolist()) == list(range(20))
        np.testing.assert_array_equal(order, np.random.default_rng([3, e]).permutation(20))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])


def test_drop_remainder_and_batch_contents():
    arrays = make_arrays(23)
    it = BatchIterator(arrays, 5, seed=0)
    assert it.steps_per_epoch == 4
    batches = [next(it) for _ in range(4)]
    seen = np.concatenate([b["y"] for b in batches])
    assert len(set(seen.tolist())) == 20 and it.epoch == 1
    for batch in batches:
        assert batch["x"].shape == (5, 2) and batch["x"].dtype == np.float32
        np.testing.assert_array_equal(batch["x"], arrays["x"][batch["y"]])  # rows stay paired
    batches[0]["x"][:] = -1  # batches are copies, not views of the data
    assert arrays["x"].min() >= 0


def test_same_seed_same_batches_different_seed_different():
    def run(seed: int) -> np.ndarray:
        it = BatchIterator(make_arrays(50), 8, seed=seed)
        return np.stack([next(it)["y"] for _ in range(13)])

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_unshuffled_iterator_is_in_order():
    it = BatchIterator(make_arrays(10), 3, seed=0, shuffle=False)
    assert [b.tolist() for b in take_epoch(it)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert next(it)["y"].tolist() == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_state_round_trip_reproduces_the_batch_sequence(data):
    n = data.draw(st.integers(1, 40), label="n")
    batch_size = data.draw(st.integers(1, n), label="batch_size")
    seed = data.draw(st.integers(0, 2**40), label="seed")
    skip = data.draw(st.integers(0, 4 * (n // batch_size) + 3), label="skip")
    arrays = make_arrays(n)
    original = BatchIterator(arrays, batch_size, seed=seed)
    for _ in range(skip):
        next(original)
    state = json.loads(json.dumps(original.get_state()))
    restored = BatchIterator(arrays, batch_size, seed=seed)
    restored.set_state(state)
    assert restored.get_state() == original.get_state()
    for _ in range(2 * (n // batch_size) + 2):
        a, b = next(original), next(restored)
        np.testing.assert_array_equal(a["y"], b["y"])
        np.testing.assert_array_equal(a["x"], b["x"])
    original.set_state(state)  # rewinding the same iterator replays the same batches
    rewound = BatchIterator(arrays, batch_size, seed=seed)
    rewound.set_state(state)
    for _ in range(n // batch_size + 1):
        np.testing.assert_array_equal(next(original)["y"], next(rewound)["y"])


@pytest.mark.parametrize(
    "field, saved, current",
    [("seed", 1, 0), ("batch_size", 4, 5), ("num_examples", 21, 20), ("shuffle", False, True)],
)
def test_set_state_rejects_a_different_iterator(field, saved, current):
    it = BatchIterator(make_arrays(20), 5, seed=0)
    state = {**it.get_state(), field: saved}
    with pytest.raises(ValueError, match=f"{field} was {saved!r} when saved but is {current!r}"):
        it.set_state(state)


def test_set_state_rejects_out_of_range_positions():
    it = BatchIterator(make_arrays(20), 5, seed=0)
    with pytest.raises(ValueError, match=r"position must be an integer in \[0, 4\)"):
        it.set_state({**it.get_state(), "position": 4})
    with pytest.raises(ValueError, match="epoch"):
        it.set_state({**it.get_state(), "epoch": -1})


def test_batch_iterator_argument_errors():
    with pytest.raises(ValueError, match=r"batch_size=21 .* n=20"):
        BatchIterator(make_arrays(20), 21, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(make_arrays(20), 0, seed=0)
    with pytest.raises(ValueError, match="leading dimension"):
        BatchIterator({"x": np.zeros((4, 2)), "y": np.zeros(5)}, 2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        BatchIterator(make_arrays(20), 2, seed=-1)


# --------------------------------------------------------------------------- eval_batches


@pytest.mark.parametrize("n, batch_size", [(10, 4), (12, 4), (3, 8), (1, 1)])
def test_eval_batches_cover_each_example_once_with_masks(n, batch_size):
    arrays = make_arrays(n)
    batches = list(eval_batches(arrays, batch_size))
    assert len(batches) == -(-n // batch_size)
    for batch in batches:
        assert batch["x"].shape == (batch_size, 2) and batch["y"].shape == (batch_size,)
        assert batch["mask"].shape == (batch_size,) and batch["mask"].dtype == np.float32
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.tolist() == [1.0] * n + [0.0] * (len(batches) * batch_size - n)
    real = np.concatenate([b["y"] for b in batches])[mask == 1.0]
    assert real.tolist() == list(range(n))  # in order, each exactly once
    real_x = np.concatenate([b["x"] for b in batches])[mask == 1.0]
    np.testing.assert_array_equal(real_x, arrays["x"])


def test_eval_batches_rejects_a_mask_key():
    with pytest.raises(ValueError, match="mask"):
        list(eval_batches({"x": np.zeros(3), "mask": np.ones(3)}, 2))
