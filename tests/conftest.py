"""Test set-up: 8 simulated CPU devices and the local data folder, both before jax loads."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

_SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "JAXDL_DATA_DIR" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["JAXDL_DATA_DIR"] = str(_SHARED_DATA)

import tempfile  # noqa: E402

import jax  # noqa: E402  (imported after the flags on purpose)

from jaxdl.compilation_cache import enable_compilation_cache  # noqa: E402

assert jax.device_count() == 8, "tests expect 8 simulated CPU devices"

# Many tests compile the same small programs; a per-session cache keeps the suite short.
# Subprocesses started by tests (kill-and-resume, notebook) share it through the variable.
if not os.environ.get("JAXDL_COMPILATION_CACHE"):
    os.environ["JAXDL_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="jaxdl-xla-")
# Under pytest-xdist every worker process gets a folder of its own: two processes writing the
# same cache entries at once is a race we do not need.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["JAXDL_COMPILATION_CACHE"] = os.path.join(
        os.environ["JAXDL_COMPILATION_CACHE"], os.environ["PYTEST_XDIST_WORKER"])
enable_compilation_cache(os.environ["JAXDL_COMPILATION_CACHE"])

import pytest  # noqa: E402


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (our default): one worker per core, at most 4. Compiling is single-threaded,
    so two workers on two cores ran the suite in ~14 min against 21-25 min for one process;
    each worker holds 1-4 GiB of compiled programs, hence the cap."""
    del config
    return max(1, min(4, os.cpu_count() or 1))
