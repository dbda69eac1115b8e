"""The optimizer registry (kept apart so optimizer modules can import it without cycles)."""

from jaxdl.registry import Registry

OPTIMIZERS = Registry("optimizer")
