"""Model families, registered by name for configs (``config.model.name``).

Every factory takes ``input_shape`` (one example's shape), ``num_classes`` and ``rngs``
from the trainer, plus its own keyword options from the config section.
"""

from jaxdl.models import (  # noqa: F401  (importing a family registers its models)
    autoencoder,  # deep autoencoder (K-FAC benchmark)
    cnn,
    conv,  # conv1d
    densenet,
    efficientnet,
    highway,
    inception,
    lenet,
    mlp,
    mobilenet,
    resnet,
    rnn_lm,  # rnn_lm, rnn_classifier
    seq2seq,  # rnn_seq2seq
    ssm_lm,
    transformer_models,  # gpt, transformer_classifier, transformer_seq2seq
    vgg,
    vit,
)
from jaxdl.models.cnn import SmallCNN
from jaxdl.models.mlp import MLP
from jaxdl.models.registry import MODELS

__all__ = ["MODELS", "MLP", "SmallCNN"]
