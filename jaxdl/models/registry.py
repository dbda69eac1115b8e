"""The model registry (kept apart so family modules can import it without cycles)."""

from jaxdl.registry import Registry

MODELS = Registry("model")

ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "elu", "leaky_relu", "sigmoid")
