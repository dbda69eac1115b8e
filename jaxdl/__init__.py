"""jaxdl: classic deep-learning algorithms in JAX, behind pure functions of pytrees."""

__version__ = "0.1.0"
