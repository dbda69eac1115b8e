"""First-order optimizers by name: optax's own transformations behind one naming scheme.

Every factory takes ``learning_rate`` (a float or an optax schedule) plus its own options and
returns an ``optax.GradientTransformation``. Weight decay, where an optimizer has it, skips
1-D parameters (biases, norm scales) unless ``decay_all=True``.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from jaxdl.optim.registry import OPTIMIZERS

LR = optax.ScalarOrSchedule


_NO_DECAY_NAMES = ("bias", "scale", "shift", "offset")
_DECAY_NAMES = ("kernel", "embedding")


def decay_mask(params: Any) -> Any:
    """True for parameters that get weight decay: kernels and embeddings, not biases and
    norm scales. Decided by the leaf's name where it is a known one, so the layer-stacked
    parameters of a scanned model (a bias of shape ``[layers, d]``) are masked like
    unstacked ones; other leaves decay when they are matrices (``ndim > 1``)."""

    def decays(path, p) -> bool:
        name = str(getattr(path[-1], "key", getattr(path[-1], "name", ""))) if path else ""
        if name in _NO_DECAY_NAMES:
            return False
        return name in _DECAY_NAMES or p.ndim > 1

    return jax.tree_util.tree_map_with_path(decays, params)


def _mask(decay_all: bool):
    return None if decay_all else decay_mask


@OPTIMIZERS.register("sgd")
def sgd(*, learning_rate: LR, momentum: float = 0.0, nesterov: bool = False):
    """SGD, with heavy-ball (Polyak, 1964) or Nesterov (1983) momentum when ``momentum > 0``.

    Momentum form: ``v <- momentum * v + g``, ``w <- w - lr * v`` (Nesterov: the step is
    ``lr * (g + momentum * v)``, Sutskever et al., 2013).
    """
    return optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)


@OPTIMIZERS.register("momentum")
def momentum(*, learning_rate: LR, momentum: float = 0.9):
    """Heavy-ball momentum (Polyak, 1964): ``v <- m v + g``, ``w <- w - lr v``."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=False)


@OPTIMIZERS.register("nesterov")
def nesterov(*, learning_rate: LR, momentum: float = 0.9):
    """Nesterov accelerated gradient (Nesterov, 1983; Sutskever et al., 2013 form)."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


@OPTIMIZERS.register("adagrad")
def adagrad(*, learning_rate: LR, initial_accumulator_value: float = 0.1, eps: float = 1e-7):
    """AdaGrad (Duchi, Hazan & Singer, 2011): ``s <- s + g^2``,
    ``w <- w - lr g / sqrt(s + eps)``."""
    return optax.adagrad(learning_rate, initial_accumulator_value=initial_accumulator_value,
                         eps=eps)


@OPTIMIZERS.register("rmsprop")
def rmsprop(*, learning_rate: LR, decay: float = 0.9, eps: float = 1e-8,
            momentum: float = 0.0, centered: bool = False):
    """RMSProp (Tieleman & Hinton, 2012): ``s <- d s + (1-d) g^2``,
    step ``lr g / sqrt(s + eps)``."""
    return optax.rmsprop(learning_rate, decay=decay, eps=eps, momentum=momentum or None,
                         centered=centered)


@OPTIMIZERS.register("adam")
def adam(*, learning_rate: LR, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """Adam (Kingma & Ba, 2015), bias-corrected first and second moments."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


@OPTIMIZERS.register("adamw")
def adamw(*, learning_rate: LR, weight_decay: float = 1e-4, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, decay_all: bool = False):
    """AdamW, decoupled weight decay (Loshchilov & Hutter, 2019); 1-D params not decayed."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                       mask=_mask(decay_all))


@OPTIMIZERS.register("lamb")
def lamb(*, learning_rate: LR, weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-6, decay_all: bool = False):
    """LAMB (You et al., 2020): the AdamW direction rescaled per layer by ``||w|| / ||u||``."""
    return optax.lamb(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                      mask=_mask(decay_all))


@OPTIMIZERS.register("lars")
def lars(*, learning_rate: LR, weight_decay: float = 0.0, trust_coefficient: float = 0.001,
         momentum: float = 0.9, nesterov: bool = False, decay_all: bool = False):
    """LARS (You, Gitman & Ginsburg, 2017): layer-wise trust ratio ``eta ||w|| / ||g + wd w||``
    then momentum. Biases and norm scales get neither decay nor trust ratio by default."""
    mask = _mask(decay_all)
    return optax.lars(learning_rate, weight_decay=weight_decay,
                      weight_decay_mask=mask if mask else True,
                      trust_coefficient=trust_coefficient,
                      trust_ratio_mask=mask if mask else True, momentum=momentum,
                      nesterov=nesterov)


@OPTIMIZERS.register("lion")
def lion(*, learning_rate: LR, b1: float = 0.9, b2: float = 0.99, weight_decay: float = 0.0,
         decay_all: bool = False):
    """Lion (Chen et al., 2023): ``w <- w - lr (sign(b1 m + (1-b1) g) + wd w)``,
    ``m <- b2 m + (1-b2) g``."""
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay,
                      mask=_mask(decay_all))


@OPTIMIZERS.register("adafactor")
def adafactor(*, learning_rate: LR, decay_rate: float = 0.8, clipping_threshold: float = 1.0,
              min_dim_size_to_factor: int = 128, multiply_by_parameter_scale: bool = False,
              eps: float = 1e-30):
    """Adafactor (Shazeer & Stern, 2018): second moments of matrices kept as row and column
    factors (memory ``O(n + m)`` instead of ``O(nm)``), update clipping by RMS."""
    return optax.adafactor(learning_rate, decay_rate=decay_rate,
                           clipping_threshold=clipping_threshold,
                           min_dim_size_to_factor=min_dim_size_to_factor,
                           multiply_by_parameter_scale=multiply_by_parameter_scale, eps=eps)
