"""jaxdl: classic deep-learning algorithms in JAX, behind pure functions of pytrees."""

from jaxdl import host_memory as _host_memory

__version__ = "0.1.0"

# Before JAX creates its CPU client: keep XLA:CPU's per-step temporaries in the malloc heap
# (see jaxdl.host_memory; JAXDL_HOST_MALLOC=default opts out).
_host_memory.apply_at_import()
