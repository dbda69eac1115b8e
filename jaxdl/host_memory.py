"""Keep XLA:CPU's per-step temporary buffers in the malloc heap instead of fresh mappings.

XLA:CPU allocates an executable's temporaries when a call starts and frees them when it ends
(the GPT bench train step: a 483 MB block every step). glibc's malloc serves a block that
large with a fresh anonymous ``mmap`` and returns it with ``munmap``, and a thread attached
to a secondary malloc arena (each of XLA's worker threads gets one) always does so. The
kernel then zero-fills every 4 KiB page again on first touch, every step: on the GPT bench
step 100,000-120,000 page faults and 0.27-0.31 s of system CPU time per step, a sixth of
its CPU time (``resource.getrusage`` around the steps; ``strace`` shows one ``mmap`` /
``munmap`` pair of the temp size per step).

Three ``mallopt`` settings keep such blocks in the main arena's heap and reuse them:
``M_ARENA_MAX=1`` (every thread allocates from the main arena), ``M_MMAP_MAX=0`` (no
mmap-served blocks) and ``M_TRIM_THRESHOLD=2**31 - 1`` (freed memory at the top of the heap
is kept, up to 2 GiB). Measured on the GPT bench step (a scratch script: 4 unrolled
microbatches, 2 cores, ``getrusage`` and ``/proc/self/statm`` per step over 30 steps): page
faults ~102,000 every step without; with, ~100,000 on the first two steps and then 0 (the
heap settles), 782-789 -> 691-742 ms per step (median 706). The cost: the process keeps the
heap it grew, up to about twice the largest temporary where fragmentation strikes (resident
memory after a step 990 -> 1,387 MB here; 969 MB with one pass, as without), and threads
share one arena's lock. ``tests/test_host_memory.py`` measures the faults on a 64 MiB
temporary.

Threads pick their arena when they first allocate, and XLA's threads do so when JAX creates
its CPU client, so the settings only help if applied before that: ``import jaxdl`` applies
them (:func:`apply_at_import`) when all of these hold, and otherwise changes nothing:

- Linux with glibc;
- no JAX backend is initialised yet (import jaxdl before the first computation);
- JAX will run on the CPU: ``JAX_PLATFORMS=cpu``, or no GPU/TPU plugin is installed;
- the environment variable ``JAXDL_HOST_MALLOC`` is unset or ``keep`` (``default`` leaves
  malloc alone).

:func:`status` says what happened and why.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import pkgutil
import platform
import sys

ENV_VAR = "JAXDL_HOST_MALLOC"
CHOICES = ("keep", "default")
# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
ACCELERATOR_MODULES = ("libtpu",)

_log = logging.getLogger(__name__)
_status = "not attempted"


def status() -> str:
    """What :func:`apply_at_import` did, e.g. ``"applied"`` or ``"skipped: <reason>"``."""
    return _status


def decide(choice: str | None, *, glibc: bool, backends_initialized: bool,
           cpu_only: bool) -> str | None:
    """None if the settings should be applied, else the reason not to (pure: testable)."""
    choice = (choice or "keep").strip().lower()
    if choice not in CHOICES:
        return f"{ENV_VAR}={choice!r}: expected one of {list(CHOICES)}"
    if choice == "default":
        return f"{ENV_VAR}=default"
    if not glibc:
        return "not Linux with glibc"
    if backends_initialized:
        return "a JAX backend was already initialised (import jaxdl before computing)"
    if not cpu_only:
        return "a GPU/TPU plugin is installed and JAX_PLATFORMS is not 'cpu'"
    return None


def _is_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _backends_initialized() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # a private API: when it moves, assume the worst
        return True


def _cpu_only() -> bool:
    platforms = {p.strip() for p in os.environ.get("JAX_PLATFORMS", "").split(",") if p.strip()}
    if platforms:
        return platforms == {"cpu"}
    if any(importlib.util.find_spec(name) for name in ACCELERATOR_MODULES):
        return False
    spec = importlib.util.find_spec("jax_plugins")  # namespace of JAX's PJRT plugins
    if spec is not None and spec.submodule_search_locations:
        if next(pkgutil.iter_modules(spec.submodule_search_locations), None) is not None:
            return False
    return True


def apply_at_import() -> str:
    """Apply the malloc settings if :func:`decide` allows it; never raises. Returns
    :func:`status`."""
    global _status
    try:
        reason = decide(os.environ.get(ENV_VAR), glibc=_is_glibc(),
                        backends_initialized=_backends_initialized(), cpu_only=_cpu_only())
        if reason is None:
            libc = ctypes.CDLL("libc.so.6")
            failed = [param for param, value in SETTINGS if libc.mallopt(param, value) != 1]
            reason = f"mallopt refused parameters {failed}" if failed else None
    except Exception as error:  # noqa: BLE001 - an import side effect must not break import
        reason = f"error: {error}"
    _status = "applied" if reason is None else f"skipped: {reason}"
    bad_value = (os.environ.get(ENV_VAR) or "keep").strip().lower() not in CHOICES
    (_log.warning if bad_value else _log.debug)("jaxdl.host_memory %s", _status)
    return _status
