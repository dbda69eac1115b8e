"""Automatic differentiation beyond ``jax.grad`` (book chapters 91-92).

Every function is pure over pytrees and can be called inside ``jax.jit``; the submodules
each hold one concept:

* :mod:`~jaxdl.autodiff.products`: JVP/VJP, mode-choosing Jacobians, Hessian-vector,
  Gauss-Newton- and Fisher-vector products, dense Hessians of small models.
* :mod:`~jaxdl.autodiff.stochastic`: Hutchinson estimates of trace and diagonal.
* :mod:`~jaxdl.autodiff.spectrum`: power iteration, Lanczos, top eigenvalues and the
  stochastic-Lanczos spectral density.
* :mod:`~jaxdl.autodiff.per_example`: per-example gradients and their norms (``vmap`` of
  ``grad``), with a Python-loop reference.
* :mod:`~jaxdl.autodiff.meta`: gradients through an unrolled inner optimisation
  (learning a learning rate).
* :mod:`~jaxdl.autodiff.gradcheck`: float64 central-difference gradient checking with a
  relative error per parameter leaf.
* :mod:`~jaxdl.autodiff.gradient_flow`: per-layer gradient and activation norms of an NNX
  model (``gradient_flow.gradient_flow``), and a vanishing/exploding diagnosis.
* :mod:`~jaxdl.autodiff.graph`: a function's jaxpr as a DAG (topological order, parallel
  levels, FLOPs, DOT and networkx export).
* :mod:`~jaxdl.autodiff.xla_view`: HLO op counts before/after XLA's optimisations, and the
  memory/FLOP trade-off of ``jax.checkpoint`` (rematerialisation).
* :mod:`~jaxdl.autodiff.tape`: a small tape-based reverse-mode engine in numpy.
"""

from jaxdl.autodiff.gradcheck import GradCheckReport, check_gradients
from jaxdl.autodiff.gradient_flow import diagnose, format_gradient_flow
from jaxdl.autodiff.graph import ComputationGraph, build_graph
from jaxdl.autodiff.meta import learn_learning_rate, meta_gradient, unrolled_sgd
from jaxdl.autodiff.per_example import (
    per_example_grad_norms,
    per_example_grads,
    per_example_grads_loop,
)
from jaxdl.autodiff.products import (
    fisher_vector_product,
    gauss_newton_vector_product,
    hessian,
    hessian_vector_product,
    jacobian,
    jvp,
    model_apply_fn,
    model_loss_fn,
    vjp,
)
from jaxdl.autodiff.spectrum import (
    lanczos,
    power_iteration,
    spectral_density,
    top_eigenvalues,
)
from jaxdl.autodiff.stochastic import hutchinson_diagonal, hutchinson_trace
from jaxdl.autodiff.xla_view import hlo_op_counts, remat_memory_report

__all__ = [
    "ComputationGraph", "GradCheckReport", "build_graph", "check_gradients", "diagnose",
    "fisher_vector_product", "format_gradient_flow", "gauss_newton_vector_product",
    "hessian", "hessian_vector_product", "hlo_op_counts",
    "hutchinson_diagonal", "hutchinson_trace", "jacobian", "jvp", "lanczos",
    "learn_learning_rate", "meta_gradient", "model_apply_fn", "model_loss_fn",
    "per_example_grad_norms", "per_example_grads", "per_example_grads_loop",
    "power_iteration", "remat_memory_report", "spectral_density", "top_eigenvalues",
    "unrolled_sgd", "vjp",
]
