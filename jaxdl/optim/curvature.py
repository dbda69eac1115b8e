"""Which optimizers need curvature from the train step, found from their state."""

from __future__ import annotations

from typing import Any

import jax

from jaxdl.optim.kfac import KFACState
from jaxdl.optim.second_order import SecondOrderState

CURVATURE_STATES = (KFACState, SecondOrderState)


def curvature_requested(opt_state: Any) -> bool:
    """True when ``opt_state`` (of any chain or wrapper) holds a K-FAC or second-order
    state: the train step then passes curvature statistics and closures to ``update``."""
    leaves = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, CURVATURE_STATES))
    return any(isinstance(leaf, CURVATURE_STATES) for leaf in leaves)


def curvature_subsample(opt_state: Any) -> int:
    """The ``curvature_subsample`` of the K-FAC state(s) in ``opt_state`` (1 if none)."""
    leaves = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, KFACState))
    return min([leaf.curvature_subsample for leaf in leaves if isinstance(leaf, KFACState)],
               default=1)
