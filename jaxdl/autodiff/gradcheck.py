"""Gradient checking: compare ``jax.grad`` with central finite differences in float64.

For each coordinate ``i`` the central difference
``g_fd = (f(x + h e_i) - f(x - h e_i)) / (2 h)`` has truncation error ``O(h^2 f''')``
and round-off error ``O(eps_machine |f| / h)`` (Nocedal & Wright, 2006, sec. 8.1), so in
float64 with ``h ~ 1e-6`` both are ~1e-10 relative and a correct gradient agrees to far
better than the default threshold of 1e-6, while a wrong backward rule (a buggy
``jax.custom_vjp``, a dropped term) shows up as an O(1e-2..1) relative error.

The per-coordinate error is ``|g - g_fd| / max(|g| + |g_fd|, tiny)``. ``tiny`` keeps
coordinates whose true derivative is ~0 (dead ReLUs, unused parameters) from turning
round-off noise into huge relative errors: by default it is set so that a coordinate
passes when ``|g - g_fd|`` is within the estimated finite-difference noise
``10 eps_machine max(|f|, 1) / h`` (see :func:`default_tiny`).

Large leaves are checked on a seeded random subset of coordinates
(``max_coords_per_leaf``), so a check costs ``2 * coords`` evaluations of ``f`` per leaf
whatever the model size. Evaluation is local float64: ``jax.enable_x64`` is used as a
context manager, so the setting does not leak into other code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def path_to_str(path: tuple) -> str:
    """A pytree key path as ``"layers/0/kernel"``."""
    return jax.tree_util.keystr(path, simple=True, separator="/") or "<root>"


@dataclasses.dataclass(frozen=True)
class LeafCheck:
    """The comparison for one parameter leaf.

    ``worst_index`` is the (unravelled) coordinate with the largest relative error.
    """

    path: str
    shape: tuple[int, ...]
    coords_checked: int
    max_rel_error: float
    max_abs_error: float
    worst_index: tuple[int, ...]
    ok: bool


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """Result of :func:`check_gradients`: one :class:`LeafCheck` per float leaf."""

    leaves: tuple[LeafCheck, ...]
    loss: float
    eps: float
    threshold: float
    tiny: float

    @property
    def passed(self) -> bool:
        return all(leaf.ok for leaf in self.leaves)

    @property
    def failing(self) -> tuple[str, ...]:
        """Paths of the leaves whose gradient disagrees with finite differences."""
        return tuple(leaf.path for leaf in self.leaves if not leaf.ok)

    @property
    def max_rel_error(self) -> float:
        return max((leaf.max_rel_error for leaf in self.leaves), default=0.0)

    def __str__(self) -> str:
        header = ("leaf", "shape", "coords", "max rel err", "max abs err", "ok")
        rows = [
            (leaf.path, str(leaf.shape), str(leaf.coords_checked),
             f"{leaf.max_rel_error:.2e}", f"{leaf.max_abs_error:.2e}",
             "yes" if leaf.ok else "NO")
            for leaf in self.leaves
        ]
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        verdict = "PASSED" if self.passed else f"FAILED: {', '.join(self.failing)}"
        return "\n".join([
            f"gradient check (float64, central differences, eps={self.eps:g}, "
            f"threshold={self.threshold:g}, tiny={self.tiny:.2e}, loss={self.loss:.6g})",
            line(header),
            line(tuple("-" * w for w in widths)),
            *(line(r) for r in rows),
            verdict,
        ])


def default_tiny(loss: float, eps: float, threshold: float) -> float:
    """Denominator floor so that round-off noise alone never fails a coordinate.

    The central difference's round-off error is about ``eps_machine * |f| / eps``; we take
    ten times that (intermediate terms can exceed ``|f|``) as the noise level ``noise``
    and return ``noise / threshold``: a coordinate with ``|g|, |g_fd|`` below the floor
    then passes exactly when ``|g - g_fd| <= noise``.
    """
    noise = 10.0 * np.finfo(np.float64).eps * max(abs(loss), 1.0) / eps
    return noise / threshold


def _to_float64(tree: PyTree) -> PyTree:
    """Float array leaves -> float64 (call under ``jax.enable_x64``); others unchanged."""
    def convert(leaf):
        if isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.asarray(leaf, jnp.float64)
        return leaf
    return jax.tree.map(convert, tree)


def _central_differences(fn: Callable[[list], jax.Array]) -> Callable[..., list]:
    """``(leaves, coords, eps) -> differences``: for each leaf ``j``, the central differences
    of ``fn(leaves)`` along the flat coordinates ``coords[j]: int [k_j]`` (shape ``[k_j]``).
    One compiled program for all leaves, vectorised over each leaf's coordinates; ``eps``
    is an argument, not a constant, so checks at several steps share the compilation."""

    def along(leaves: list, index: int, coord: jax.Array, eps: jax.Array) -> jax.Array:
        base = leaves[index]
        flat = base.reshape(-1)
        x = flat[coord]
        # The step actually taken, (x + eps) - (x - eps), is not exactly 2 eps in floating
        # point; dividing by it removes that representation error.
        up, down = x + eps, x - eps

        def at(value):
            new_leaves = list(leaves)
            new_leaves[index] = flat.at[coord].set(value).reshape(base.shape)
            return fn(new_leaves)

        return (at(up) - at(down)) / (up - down)

    def all_leaves(leaves: list, coords: list, eps: jax.Array) -> list:
        return [jax.vmap(lambda c, j=j: along(leaves, j, c, eps))(cs)
                for j, cs in enumerate(coords)]

    return jax.jit(all_leaves)


def check_gradients(
    f: Callable[..., jax.Array],
    params: PyTree,
    *args,
    eps: float = 1e-6,
    threshold: float = 1e-6,
    max_coords_per_leaf: int = 50,
    seed: int = 0,
    tiny: float | None = None,
) -> GradCheckReport:
    """Compare ``jax.grad(f)`` with central finite differences, leaf by leaf, in float64.

    Args:
      f: ``(params, *args) -> scalar``; must be traceable by JAX.
      params: pytree of arrays (non-float leaves are not checked).
      *args: further inputs, held fixed; float arrays among them are promoted to float64.
      eps: finite-difference step ``h``.
      threshold: largest acceptable per-coordinate relative error.
      max_coords_per_leaf: leaves larger than this are checked on this many coordinates,
        drawn without replacement with ``numpy.random.default_rng(seed + leaf_number)``.
      seed: seed for the coordinate subsets.
      tiny: denominator floor of the relative error; ``None`` for :func:`default_tiny`.

    Returns:
      :class:`GradCheckReport` (``passed``, ``failing`` leaf paths, a printable table).
    """
    if not eps > 0:
        raise ValueError(f"eps={eps!r}: expected a positive float.")
    if not threshold > 0:
        raise ValueError(f"threshold={threshold!r}: expected a positive float.")
    if not (isinstance(max_coords_per_leaf, int) and max_coords_per_leaf >= 1):
        raise ValueError(f"max_coords_per_leaf={max_coords_per_leaf!r}: expected an int >= 1.")
    if tiny is not None and not tiny > 0:
        raise ValueError(f"tiny={tiny!r}: expected a positive float or None.")

    with jax.enable_x64(True):
        params64, args64 = _to_float64(params), _to_float64(args)
        paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(params64)
        all_leaves = [leaf for _, leaf in paths_leaves]
        # Only float leaves are differentiated (jax.grad rejects integer inputs).
        float_ids = [i for i, leaf in enumerate(all_leaves)
                     if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
                     and jnp.size(leaf) > 0]

        def fn(float_leaves: list) -> jax.Array:
            leaves = list(all_leaves)
            for i, leaf in zip(float_ids, float_leaves):
                leaves[i] = leaf
            return f(jax.tree.unflatten(treedef, leaves), *args64)

        float_leaves = [all_leaves[i] for i in float_ids]
        out_shape = jnp.shape(jax.eval_shape(fn, float_leaves))
        if out_shape != ():
            raise ValueError(f"f: expected a scalar output, got shape {out_shape}.")
        loss, grads = jax.jit(jax.value_and_grad(fn))(float_leaves)
        loss = float(loss)
        tiny = default_tiny(loss, eps, threshold) if tiny is None else float(tiny)

        coords_per_leaf = []
        for leaf_id, leaf in zip(float_ids, float_leaves):
            size = int(jnp.size(leaf))
            if size <= max_coords_per_leaf:
                coords_per_leaf.append(np.arange(size))
            else:
                rng = np.random.default_rng(seed + leaf_id)
                coords_per_leaf.append(
                    np.sort(rng.choice(size, max_coords_per_leaf, replace=False)))
        differences = _central_differences(fn)(
            float_leaves, [jnp.asarray(c) for c in coords_per_leaf], jnp.float64(eps))

        checks = []
        for leaf_id, leaf, grad, coords, fd in zip(
                float_ids, float_leaves, grads, coords_per_leaf, differences):
            g = np.asarray(grad, np.float64).reshape(-1)[coords]
            g_fd = np.asarray(fd, np.float64)
            abs_err = np.abs(g - g_fd)
            rel_err = abs_err / np.maximum(np.abs(g) + np.abs(g_fd), tiny)
            worst = int(np.argmax(rel_err))
            max_rel = float(rel_err[worst])
            checks.append(LeafCheck(
                path=path_to_str(paths_leaves[leaf_id][0]),
                shape=tuple(int(d) for d in jnp.shape(leaf)),
                coords_checked=len(coords),
                max_rel_error=max_rel,
                max_abs_error=float(abs_err.max()),
                worst_index=tuple(int(i) for i in np.unravel_index(coords[worst],
                                                                      jnp.shape(leaf))),
                # A NaN error (NaN gradient) compares False, so it fails as it should.
                ok=bool(max_rel <= threshold),
            ))
    return GradCheckReport(leaves=tuple(checks), loss=loss, eps=float(eps),
                           threshold=float(threshold), tiny=tiny)
