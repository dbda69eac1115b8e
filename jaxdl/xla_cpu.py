"""XLA:CPU compiler options: convolutions through Eigen (multi-threaded) instead of YNNPACK.

jax 0.10's XLA:CPU hands convolutions, dots, elementwise ops and reductions to YNNPACK
fusions by default. A YNNPACK convolution runs on *one* core, while XLA's own Eigen
convolution uses the intra-op thread pool. Measured on the 2-core development machine
(quiet, jax 0.10.2) with a one-off micro-benchmark (``jax.jit`` of the convolution and of
its VJP, medians of 5-7 rounds of 10 calls; PyTorch ``nn.Conv2d`` forward and ``backward``),
one 3x3 convolution ``[128, 14, 14, 32] -> 64`` channels:

=========================  ===========  =============  ==============
                           forward      input grad     weight grad
=========================  ===========  =============  ==============
YNNPACK (XLA default)      11.0 ms      11.4 ms        30.7 ms
Eigen (YNNPACK off)         5.6 ms       6.2 ms         7.3 ms
PyTorch 2.13 eager          7.9 ms      (dx + dW: 17.3 ms)
=========================  ===========  =============  ==============

Whole train steps (AdamW), ``python -m experiments.bench.cnn`` rows ``jax`` vs ``jax
ynnpack`` in the same run: the small CNN 56.8 vs 86.9 ms, ResNet-18 at 32x32 (batch 32)
1081 vs 1525 ms. So a step whose model convolves is compiled with
``xla_cpu_experimental_ynn_fusion_type="LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"``:
YNNPACK keeps the matmuls and the reductions, and the convolutions go to Eigen (YNNPACK's
elementwise fusions are left out because they pull a convolution back in with the bias add
that follows it). Keeping the reductions matters: XLA's own loop emitter ran BatchNorm's
backward reductions (each fused with a recomputation of the normalisation and the ReLU
mask) at ~9 ns per element on one core, 18% of the ResNet step. Scratch same-process A/B
(``jax_stepper`` of ``experiments.bench.cnn``, 4 rounds, 2 cores, median ms per step), no
YNNPACK fusions at all (the previous setting) -> these options: ResNet-18 1050 -> 831, the
small CNN 43.1 -> 36.3 (reductions alone: 844 and 37.0; with elementwise fusions too: 871
and 39.8). Programs without convolutions keep XLA's default: in a same-process A/B of the
GPT bench step, YNNPACK off took 1.02x the default's time (1.08x with 4 unrolled
microbatches).

:func:`compiler_options` returns the options for a model (``None`` when none apply: another
backend, no convolution, or a jax whose XLA does not know the option); pass them to
``jax.jit(..., compiler_options=...)``. The trainer does this for its train and eval steps
(config field ``xla_cpu_convolutions``: ``"eigen"``, the default, or ``"ynnpack"``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["CONVOLUTION_OPTIONS", "MODES", "compiler_options", "has_convolutions"]

# YNNPACK keeps XLA's dots and reductions; convolutions go to Eigen. (Its elementwise fusions
# would pull a convolution back in with the bias add that follows it.)
CONVOLUTION_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ",".join(
    f"LIBRARY_FUSION_TYPE_{kind}" for kind in ("DOT", "REDUCE"))}
MODES = ("eigen", "ynnpack")
_CONV_MODULES = (nnx.Conv, nnx.ConvTranspose)

log = logging.getLogger(__name__)


def has_convolutions(module: Any) -> bool:
    """Whether ``module`` (a concrete or ``nnx.eval_shape`` abstract NNX module) contains a
    convolution: an ``nnx.Conv`` / ``nnx.ConvTranspose`` (subclasses included) or a module
    whose class sets ``convolves = True`` (one that calls ``lax.conv_general_dilated``
    itself)."""
    for _, node in nnx.iter_graph(module):
        if isinstance(node, _CONV_MODULES) or getattr(type(node), "convolves", False):
            return True
    return False


@functools.cache
def _supported(options: tuple[tuple[str, Any], ...]) -> bool:
    """Whether this jax's XLA:CPU accepts ``options`` (a tiny probe compile, once)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(
            jnp.zeros((), jnp.float32)).compile()
    except Exception as error:  # noqa: BLE001 - an unknown option is an XLA runtime error
        log.warning("XLA does not accept %s (%s); keeping its default convolutions.",
                    dict(options), str(error).splitlines()[0][:160])
        return False
    return True


def compiler_options(module: Any, mode: str = "eigen",
                     backend: str | None = None) -> dict[str, Any] | None:
    """The ``compiler_options`` for ``jax.jit`` of a step that runs ``module``.

    Args:
      module: the NNX model (concrete or abstract).
      mode: ``"eigen"``: on CPU, compile steps of a convolutional model with Eigen convolutions
        (module doc); ``"ynnpack"``: XLA's default, no options.
      backend: the platform the step runs on (default ``jax.default_backend()``).

    Returns:
      A dict for ``jax.jit(..., compiler_options=...)``, or None.
    """
    if mode not in MODES:
        raise ValueError(f"xla_cpu_convolutions={mode!r}: expected one of {MODES}.")
    backend = jax.default_backend() if backend is None else backend
    if mode == "ynnpack" or backend != "cpu" or not has_convolutions(module):
        return None
    if not _supported(tuple(sorted(CONVOLUTION_OPTIONS.items()))):
        return None
    return dict(CONVOLUTION_OPTIONS)
