"""K-FAC, an optax-native Kronecker-factored approximate curvature optimizer.

``kfac(...)`` is a ``GradientTransformation``; curvature layers (:class:`CurvatureLinear`,
:class:`CurvatureConv`, :class:`CurvatureEmbed`, :class:`CurvatureLayerNorm`,
:class:`CurvatureBatchNorm`)
expose their statistics through hooks, and the one train step passes them to
``update(..., curvature=...)`` whenever the optimizer state holds a :class:`KFACState`.
"""

from __future__ import annotations

from jaxdl.optim.kfac.estimator import (
    fisher_gram_fn,
    fisher_vector_fn,
    value_grad_and_curvature,
)
from jaxdl.optim.kfac.layers import (
    CurvatureBatchNorm,
    CurvatureConv,
    CurvatureEmbed,
    CurvatureLayerNorm,
)
from jaxdl.optim.kfac.optimizer import KFACState, damped_inverses, dense_layers, kfac
from jaxdl.optim.kfac.tags import (
    CurvatureLinear,
    curvature_scope,
    name_curvature_layers,
    register_output,
)
from jaxdl.optim.registry import OPTIMIZERS


@OPTIMIZERS.register("kfac")
def kfac_optimizer(*, learning_rate, damping: float = 1e-3, l2_damping: float = 0.0,
                   ema: float = 0.95, inverse_every: int = 20, momentum: float = 0.9,
                   kl_clip: float = 0.0, adaptive: bool = False,
                   adapt_damping: bool = False, damping_every: int = 5,
                   damping_decay: float = 0.95, min_damping: float = 1e-8,
                   curvature_subsample: int = 1, ekfac: bool = False):
    """K-FAC (Martens & Grosse, 2015), EKFAC with ``ekfac=True`` (George et al., 2018);
    see :func:`jaxdl.optim.kfac.kfac`."""
    return kfac(learning_rate, damping=damping, l2_damping=l2_damping, ema=ema,
                inverse_every=inverse_every, momentum=momentum, kl_clip=kl_clip,
                adaptive=adaptive, adapt_damping=adapt_damping,
                damping_every=damping_every, damping_decay=damping_decay,
                min_damping=min_damping, curvature_subsample=curvature_subsample,
                ekfac=ekfac)


__all__ = ["CurvatureBatchNorm", "CurvatureConv", "CurvatureEmbed", "CurvatureLayerNorm",
           "CurvatureLinear", "KFACState", "curvature_scope", "damped_inverses", "dense_layers",
           "fisher_gram_fn", "fisher_vector_fn", "kfac", "name_curvature_layers",
           "register_output", "value_grad_and_curvature"]
