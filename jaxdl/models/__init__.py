"""Model families, registered by name for configs (``config.model.name``).

Every factory takes ``input_shape`` (one example's shape), ``num_classes`` and ``rngs``
from the trainer, plus its own keyword options from the config section.
"""

from jaxdl.models import cnn, mlp  # noqa: F401  (registers the families)
from jaxdl.models.cnn import SmallCNN
from jaxdl.models.mlp import MLP
from jaxdl.models.registry import MODELS

__all__ = ["MODELS", "MLP", "SmallCNN"]
