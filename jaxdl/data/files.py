"""Locate, download and verify data files.

A data file is named by a path relative to a data root (for example
``"mnist/t10k-images-idx3-ubyte.gz"``) and pinned by its sha256. :func:`find_data_file`
looks for it in, in order:

1. ``$JAXDL_DATA_DIR/<relpath>`` (a shared, read-only data folder), then
2. the user cache, ``$JAXDL_CACHE_DIR/<relpath>`` or ``~/.cache/jaxdl/<relpath>``,

and otherwise downloads it into the user cache. Every file is checked against its sha256
before it is returned; a bad file raises :class:`DataError` instead of producing silently
wrong data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "JAXDL_DATA_DIR"
CACHE_DIR_ENV = "JAXDL_CACHE_DIR"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20

# (resolved path, size, mtime_ns, sha256) of files already verified in this process.
_verified: set[tuple[str, int, int, str]] = set()


class DataError(ValueError):
    """A data file is missing, corrupted or malformed. The message says what to do."""


def data_dir() -> pathlib.Path | None:
    """The shared data folder named by ``$JAXDL_DATA_DIR``, or None when it is unset."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return pathlib.Path(value).expanduser() if value else None


def cache_dir() -> pathlib.Path:
    """The user cache folder: ``$JAXDL_CACHE_DIR`` if set, else ``~/.cache/jaxdl``."""
    value = os.environ.get(CACHE_DIR_ENV, "").strip()
    if value:
        return pathlib.Path(value).expanduser()
    return pathlib.Path.home() / ".cache" / "jaxdl"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: pathlib.Path, sha256: str) -> tuple[str, int, int, str]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, sha256)


def verify_file(path: str | os.PathLike[str], sha256: str) -> None:
    """Raise DataError unless the file's sha256 is ``sha256``.

    The result is remembered per (path, size, mtime) in this process, so verifying an
    unchanged file again costs one ``stat``.
    """
    path = pathlib.Path(path)
    expected = _check_sha256(sha256)
    key = _stat_key(path, expected)
    if key in _verified:
        return
    actual = file_sha256(path)
    if actual != expected:
        raise DataError(
            f"data file {str(path)!r} is corrupted or truncated: expected sha256 {expected}, "
            f"got {actual} ({key[1]:,} bytes). Delete or replace this file with a good copy "
            "(a file in the cache folder is downloaded again once deleted)."
        )
    _verified.add(key)


def fetch_url(url: str, dest: pathlib.Path) -> None:
    """Write the bytes at ``url`` to the file ``dest`` (urllib; http(s) or file:// URLs).

    Raises OSError (urllib.error.URLError included) when the URL cannot be read.
    """
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        with open(dest, "wb") as f:
            shutil.copyfileobj(response, f, _CHUNK)


def _check_sha256(sha256: str) -> str:
    value = str(sha256).strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return value


def _check_relpath(relpath: str) -> pathlib.PurePosixPath:
    rel = pathlib.PurePosixPath(str(relpath).replace(os.sep, "/"))
    if rel.is_absolute() or not rel.parts or ".." in rel.parts:
        raise ValueError(f"relpath must be a relative path inside the data folder, got {relpath!r}")
    return rel


def _download(urls: Sequence[str], final: pathlib.Path, sha256: str) -> list[str]:
    """Try each URL until one yields a file with the right sha256; return failure notes.

    The bytes go to a temporary file next to ``final`` that is renamed into place only
    once verified, so an interrupted or bad download never sits at ``final``.
    """
    failures: list[str] = []
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return [f"cannot create {str(final.parent)!r}: {e}"]
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
        os.close(fd)
        tmp = pathlib.Path(tmp_name)
        try:
            logger.info("downloading %s to %s", url, final)
            try:
                fetch_url(url, tmp)
            except Exception as e:  # any fetch failure means: try the next URL
                failures.append(f"{url}: download failed ({type(e).__name__}: {e})")
                continue
            actual = file_sha256(tmp)
            if actual != sha256:
                failures.append(
                    f"{url}: downloaded file has sha256 {actual}, expected {sha256}; discarded"
                )
                continue
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
            _verified.add(_stat_key(final, sha256))
            return []
        finally:
            tmp.unlink(missing_ok=True)
    return failures


def find_data_file(relpath: str, *, sha256: str, urls: Sequence[str] = ()) -> pathlib.Path:
    """The verified local path of data file ``relpath``, downloading it if needed.

    Args:
      relpath: path relative to the data root, e.g. ``"mnist/t10k-labels-idx1-ubyte.gz"``.
      sha256: expected hex sha256 of the file's bytes.
      urls: where to download it from, tried in order, when no local copy exists.

    Returns:
      The path of a file whose sha256 matches: ``$JAXDL_DATA_DIR/relpath`` if present, else
      the user-cache copy (downloaded there first if needed).

    Raises:
      DataError: a local copy has the wrong sha256 (the message names the path, the
        expected and actual sha256), or no copy exists and every download failed (the
        message says where to put the file, which URLs to fetch and the sha256).
    """
    rel = _check_relpath(relpath)
    expected = _check_sha256(sha256)
    shared = data_dir()
    cached = cache_dir() / rel
    if shared is not None and (shared / rel).is_file():
        verify_file(shared / rel, expected)
        return shared / rel
    if cached.is_file():
        verify_file(cached, expected)
        return cached
    failures = _download(list(urls), cached, expected) if urls else ["no download URL is known"]
    if not failures:
        return cached
    if shared is not None:
        shared_hint = f"{shared / rel}  (${DATA_DIR_ENV}/{rel})"
    else:
        shared_hint = f"${DATA_DIR_ENV}/{rel}  (${DATA_DIR_ENV} is not set)"
    lines = [
        f"data file {str(rel)!r} was not found and could not be downloaded.",
        "Put a copy at either of:",
        f"  {shared_hint}",
        f"  {cached}  (user cache; set ${CACHE_DIR_ENV} to move it)",
    ]
    if urls:
        lines.append("Download it from " + ("one of:" if len(urls) > 1 else ":"))
        lines += [f"  {url}" for url in urls]
    lines.append(f"Expected sha256: {expected}")
    lines.append("Download attempts:")
    lines += [f"  {note}" for note in failures]
    raise DataError("\n".join(lines))
