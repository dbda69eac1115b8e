"""``jaxdl.host_memory``: XLA:CPU's temporaries stay in the malloc heap between calls.

The effect is measured in fresh interpreters (the malloc settings only act when applied
before JAX starts its CPU client): mean page faults over 20 calls of a program with a 64 MiB
temporary, with the settings (``import jaxdl`` before the first computation) and without
(``JAXDL_HOST_MALLOC=default``)."""

import json
import os
import subprocess
import sys

import pytest

from jaxdl import host_memory

PROBE = """
import json, resource, jax, jax.numpy as jnp
import jaxdl.host_memory as host_memory
x = jax.random.normal(jax.random.key(0), (4096, 8))
step = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x).lower(x).compile()  # a [4096, 4096] temp
for _ in range(3):
    step(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step(x).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({"status": host_memory.status(), "faults": faults,
                  "temp_pages": step.memory_analysis().temp_size_in_bytes / 4096}))
"""


def _probe(choice: str) -> dict:
    env = dict(os.environ, JAXDL_HOST_MALLOC=choice, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not host_memory._is_glibc(), reason="the settings are glibc mallopt ones")
def test_temporaries_are_reused_instead_of_faulted_in_again():
    kept, default = _probe("keep"), _probe("default")
    assert kept["status"] == "applied"
    assert default["status"] == "skipped: JAXDL_HOST_MALLOC=default"
    assert kept["temp_pages"] >= 16384  # the probe really has a 64 MiB temporary
    # Without the settings every page of the temporary is faulted in again on every call.
    assert default["faults"] > 0.8 * default["temp_pages"]
    # With them the block is reused; a call still faults one in when heap fragmentation
    # leaves no free chunk large enough (0-7 of 60 calls in trials), until the heap settles.
    assert kept["faults"] < 0.35 * kept["temp_pages"]


def test_decide_names_why_it_does_nothing():
    ok = dict(glibc=True, backends_initialized=False, cpu_only=True)
    assert host_memory.decide(None, **ok) is None
    assert host_memory.decide("keep", **ok) is None
    assert host_memory.decide("default", **ok) == "JAXDL_HOST_MALLOC=default"
    assert "expected one of ['keep', 'default']" in host_memory.decide("yes", **ok)
    assert "glibc" in host_memory.decide(None, **{**ok, "glibc": False})
    assert "already initialised" in host_memory.decide(None, **{**ok, "backends_initialized": True})
    assert "GPU/TPU" in host_memory.decide(None, **{**ok, "cpu_only": False})


def test_cpu_only_follows_jax_platforms(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert host_memory._cpu_only()
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    assert not host_memory._cpu_only()
