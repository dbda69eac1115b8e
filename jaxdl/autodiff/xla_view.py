"""What XLA does to a JAX graph: op counts before/after compilation, and remat memory.

JAX hands XLA a static graph (StableHLO) and XLA rewrites it before running it, the graph
optimisations of classic graph compilers: constant folding and algebraic simplification
(``x * 1 -> x``), operator fusion (a chain of elementwise ops becomes one kernel), and
dead-code elimination (DCE). :func:`hlo_op_counts` counts the operations in the lowered
StableHLO module and in the optimised HLO module after compilation so those rewrites can be
measured; three worked examples show each one. :func:`remat_memory_report` measures the
memory/compute trade-off of gradient checkpointing (Chen et al., 2016, "Training deep nets
with sublinear memory cost"; Griewank & Walther, 2000, "Revolve") with ``jax.checkpoint``
policies, from XLA's own buffer assignment (``memory_analysis``) and cost model
(``cost_analysis``).

Counting convention: op names are spelled as XLA HLO opcodes on both sides (StableHLO
``broadcast_in_dim`` counts as ``broadcast``, ``dot_general`` as ``dot``, ...). ``before`` /
``after`` count every op in every computation (fusion bodies and reducer regions included).
``before_total`` / ``after_total`` count the ops that run as separate steps of the program:
ops outside fusion bodies and outside the scalar combiner regions of reductions, without
bookkeeping ops (parameters, constants, tuples, bitcasts); a fusion counts as one op.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "OptimizationExample", "RematRow", "constant_folding_example", "dead_code_example",
    "fusion_example", "hlo_op_counts", "hlo_text_counts", "parse_hlo_text", "remat_memory_report",
]

_BOOKKEEPING = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all"}
# Ops whose regions are scalar combiners (applied per element inside the op, not as steps).
_COMBINER_OWNERS = {"reduce", "reduce-window", "scatter", "sort", "select-and-scatter",
                    "all-reduce", "reduce-scatter", "map"}
_STABLEHLO_TO_HLO = {"broadcast_in_dim": "broadcast", "dot_general": "dot", "case": "conditional",
                     "if": "conditional", "optimization_barrier": "opt-barrier"}
_STRUCTURAL = {"builtin.module", "func.func", "func.return", "stablehlo.return", "mhlo.return"}


def _hlo_spelling(mlir_name: str) -> str | None:
    """XLA opcode spelling of an MLIR op name; None for structural ops (module, return)."""
    if mlir_name in _STRUCTURAL:
        return None
    dialect, _, op = mlir_name.partition(".")
    if dialect == "func":
        return op  # func.call
    if dialect in ("stablehlo", "mhlo", "chlo"):
        return _STABLEHLO_TO_HLO.get(op, op.replace("_", "-"))
    return mlir_name


def _stablehlo_counts(module: Any) -> tuple[dict[str, int], int]:
    """(opcode counts over the whole module, number of top-level step ops)."""
    counts: collections.Counter[str] = collections.Counter()
    steps = 0

    def visit(op: Any, in_combiner: bool) -> None:
        nonlocal steps
        operation = getattr(op, "operation", op)
        opcode = _hlo_spelling(operation.name)
        if opcode is not None:
            counts[opcode] += 1
            steps += (not in_combiner) and opcode not in _BOOKKEEPING
        inner = in_combiner or opcode in _COMBINER_OWNERS
        for region in operation.regions:
            for block in region.blocks:
                for child in block.operations:
                    visit(child, inner)

    visit(module.operation, False)
    return dict(counts), steps


@dataclasses.dataclass
class HloComputation:
    """One computation of an HLO module: its opcodes and the computations it calls."""

    name: str
    is_entry: bool
    opcodes: list[str] = dataclasses.field(default_factory=list)
    fusion_calls: set[str] = dataclasses.field(default_factory=set)
    control_calls: set[str] = dataclasses.field(default_factory=set)


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*)$")
_CALLED = re.compile(r"\b(calls|to_apply|body|condition|branch_computations|true_computation|"
                     r"false_computation)=(\{[^}]*\}|%?[\w.\-]+)")


def _opcode(rest: str) -> str | None:
    """The opcode after ``name = <type>``; the type may be a tuple with nested parentheses."""
    if rest.startswith("("):
        depth = 0
        for i, char in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                rest = rest[i + 1:]
                break
    else:
        rest = rest.split(None, 1)[1] if " " in rest else ""
    match = re.match(r"\s*([\w\-]+)\(", rest)
    return match.group(1) if match else None


def parse_hlo_text(text: str) -> dict[str, HloComputation]:
    """Computations of an HLO module printed as text (``Compiled.as_text()``), by name."""
    computations: dict[str, HloComputation] = {}
    current: HloComputation | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if current is None:
            if stripped.endswith("{") and not stripped.startswith("HloModule"):
                is_entry = stripped.startswith("ENTRY")
                name = stripped.removeprefix("ENTRY").strip().lstrip("%").split()[0]
                current = computations.setdefault(name, HloComputation(name, is_entry))
            continue
        if stripped == "}":
            current = None
            continue
        match = _INSTRUCTION.match(line)
        opcode = _opcode(match.group(1)) if match else None
        if opcode is None:
            continue
        current.opcodes.append(opcode)
        for key, target in _CALLED.findall(line):
            names = {n.lstrip("%") for n in re.findall(r"%?[\w.\-]+", target)}
            if opcode == "fusion" and key == "calls":
                current.fusion_calls |= names
            elif opcode in ("while", "conditional", "call") or key in ("body", "condition"):
                current.control_calls |= names
    return computations


def hlo_text_counts(text: str) -> tuple[dict[str, int], int, int]:
    """(opcode counts over all computations, step ops, fusions in the entry) of HLO text."""
    computations = parse_hlo_text(text)
    counts = collections.Counter(op for c in computations.values() for op in c.opcodes)
    entry = [c for c in computations.values() if c.is_entry]
    if not entry:
        raise ValueError("text: no ENTRY computation found in the HLO module text")
    # Steps: the entry and what control flow reaches from it; fusion bodies and reducers not.
    seen, stack = set(), [entry[0].name]
    while stack:
        name = stack.pop()
        if name in seen or name not in computations:
            continue
        seen.add(name)
        stack.extend(computations[name].control_calls)
    steps = sum(op not in _BOOKKEEPING for n in seen for op in computations[n].opcodes)
    return dict(counts), steps, entry[0].opcodes.count("fusion")


def hlo_op_counts(f: Callable[..., Any], *args: Any, keep_unused: bool = False) -> dict[str, Any]:
    """Op counts of ``jax.jit(f)`` lowered (StableHLO) and compiled (optimised HLO) on ``args``.

    ``args``: arrays or ``jax.ShapeDtypeStruct``s. ``keep_unused`` is passed to ``jax.jit``;
    with the default False, JAX itself already drops unused arguments and the equations that
    feed no output (dead code) before XLA sees the module. Returns ``dict(before, after,
    before_total, after_total, fusions)`` (see the module docstring for what each counts).
    """
    lowered = jax.jit(f, keep_unused=keep_unused).lower(*args)
    before, before_total = _stablehlo_counts(lowered.compiler_ir("stablehlo"))
    after, after_total, fusions = hlo_text_counts(lowered.compile().as_text())
    return dict(before=before, after=after, before_total=before_total,
                after_total=after_total, fusions=fusions)


@dataclasses.dataclass(frozen=True)
class OptimizationExample:
    """A worked example: op counts before/after XLA and what they show."""

    name: str
    before: dict[str, int]
    after: dict[str, int]
    before_total: int
    after_total: int
    fusions: int
    explanation: str


def _example(name: str, counts: dict[str, Any], explanation: str) -> OptimizationExample:
    return OptimizationExample(name, counts["before"], counts["after"], counts["before_total"],
                               counts["after_total"], counts["fusions"], explanation)


def _arith(counts: dict[str, int]) -> int:
    return counts.get("add", 0) + counts.get("multiply", 0)


def constant_folding_example(size: int = 8) -> OptimizationExample:
    """``(x + 0) * 1 + (ones(size) * 2 + 1)``: identities removed, constant arithmetic folded."""
    def f(x: jax.Array) -> jax.Array:  # x: [size]
        return (x + 0.0) * 1.0 + (jnp.ones(size) * 2.0 + 1.0)

    counts = hlo_op_counts(f, jax.ShapeDtypeStruct((size,), jnp.float32))
    before, after = _arith(counts["before"]), _arith(counts["after"])
    return _example("constant folding", counts,
                    f"add+multiply ops {before} -> {after}: x+0 and x*1 are simplified away and "
                    f"ones*2+1 is folded into the constant 3 at compile time")


def fusion_example(shape: tuple[int, int] = (64, 64)) -> OptimizationExample:
    """``tanh(x * 2 + 1) ** 2``: four elementwise ops compile into one fused kernel."""
    def f(x: jax.Array) -> jax.Array:  # x: shape
        return jnp.tanh(x * 2.0 + 1.0) ** 2

    counts = hlo_op_counts(f, jax.ShapeDtypeStruct(shape, jnp.float32))
    return _example("fusion", counts,
                    f"{counts['before_total']} separate ops -> {counts['after_total']} step(s) "
                    f"with {counts['fusions']} fusion(s): intermediates stay in registers "
                    f"instead of round-tripping through memory")


def dead_code_example(n: int = 32) -> OptimizationExample:
    """A function computing an unused ``tanh(x @ w)``: XLA's DCE deletes the dot."""
    def f(x: jax.Array, w: jax.Array) -> jax.Array:  # x, w: [n, n]
        unused = jnp.tanh(x @ w)  # noqa: F841  (dead on purpose)
        return jnp.sin(x).sum()

    spec = jax.ShapeDtypeStruct((n, n), jnp.float32)
    # keep_unused=True stops JAX from pruning the dead dot itself, so XLA's DCE is what we see.
    counts = hlo_op_counts(f, spec, spec, keep_unused=True)
    return _example("dead-code elimination", counts,
                    f"dot ops {counts['before'].get('dot', 0)} -> "
                    f"{counts['after'].get('dot', 0)}: the unused matmul (and its tanh) is "
                    f"removed, saving {2 * n ** 3:,} FLOPs")


# -- rematerialisation ------------------------------------------------------------------------
_PLAIN_POLICIES = ("everything_saveable", "nothing_saveable", "dots_saveable", "checkpoint_dots",
                   "dots_with_no_batch_dims_saveable", "checkpoint_dots_with_no_batch_dims")


@dataclasses.dataclass(frozen=True)
class RematRow:
    """Compiled-step measurements for one checkpoint policy (ratios are vs ``"none"``).

    ``flops`` is XLA's ``cost_analysis()['flops']``, which counts a while-loop body once (so
    with ``scan_layers`` it is about one layer's work plus the loss); ``model_flops`` is the
    jaxpr FLOP model of :mod:`jaxdl.autodiff.graph`, which multiplies scan bodies by their
    length. Byte figures are ``None`` where the backend does not report them.
    """

    policy: str
    temp_bytes: int | None
    temp_ratio: float | None
    flops: float | None
    flops_ratio: float | None
    model_flops: int
    model_flops_ratio: float
    argument_bytes: int | None
    output_bytes: int | None


def _resolve_policy(name: str) -> Any:
    """"none" -> no checkpointing, "full" -> save nothing, else a jax.checkpoint_policies name."""
    if name == "none":
        return None
    if name == "full":
        return jax.checkpoint_policies.nothing_saveable
    if name in _PLAIN_POLICIES and hasattr(jax.checkpoint_policies, name):
        return getattr(jax.checkpoint_policies, name)
    raise ValueError(f"policies: unknown policy {name!r}; expected 'none', 'full' or one of "
                     f"{', '.join(_PLAIN_POLICIES)}")


def _mlp_train_step(remat: bool, policy: Any, scan_layers: bool) -> Callable[..., Any]:
    """(loss, grads) of a tanh MLP's mean squared error; each layer checkpointed if ``remat``.

    Parameters are ``(w: [depth, width, width], b: [depth, width])`` when ``scan_layers``
    (layers applied by ``lax.scan``), else a list of ``(w: [width, width], b: [width])``.
    """
    def layer(h: jax.Array, wb: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        w, b = wb  # h: [batch, width]
        return jnp.tanh(h @ w + b), None

    if remat:
        layer = jax.checkpoint(layer, policy=policy)

    def loss(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        if scan_layers:
            h, _ = jax.lax.scan(layer, x, params)
        else:
            h = x
            for wb in params:
                h, _ = layer(h, wb)
        return jnp.mean((h - y) ** 2)

    return jax.value_and_grad(loss)


def _attribute(stats: Any, name: str) -> int | None:
    value = getattr(stats, name, None) if stats is not None else None
    return int(value) if value is not None else None


def _xla_flops(compiled: Any) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001  (some backends do not implement it)
        return None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per device program
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def remat_memory_report(
    depth: int, width: int, batch: int,
    policies: Sequence[str] = ("none", "full", "dots_saveable", "everything_saveable"),
    *, scan_layers: bool = True,
) -> list[RematRow]:
    """Temp memory and FLOPs of a deep tanh-MLP training step under checkpoint policies.

    The step is ``value_and_grad`` of the MSE of ``depth`` Dense(width)+tanh layers on
    ``x: [batch, width]``; every layer is wrapped in ``jax.checkpoint(policy=...)`` except for
    ``"none"``. ``scan_layers=True`` applies the layers with ``lax.scan`` over stacked
    parameters (the usual form for deep models): the backward loop recomputes each layer and
    XLA cannot merge that with the forward loop. ``False`` unrolls a Python loop; on the CPU
    backend the compiled module then no longer contains the recomputed matmuls (the
    optimisation barriers are expanded and the duplicates merged with the forward pass), so
    the recomputation, and its memory saving, are undone by XLA -- measured, not assumed.

    Figures come from the compiled program for the default backend. Returns one row per policy.
    """
    for arg, value in (("depth", depth), ("width", width), ("batch", batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg}: expected a positive int, got {value!r}")
    if not policies:
        raise ValueError("policies: expected at least one policy name")
    from jaxdl.autodiff.graph import jaxpr_flops  # the jaxpr FLOP model (scan-aware)

    # The "none" baseline is always measured: the ratios are relative to it.
    resolved = {name: _resolve_policy(name) for name in ("none", *policies)}
    f32 = jnp.float32
    if scan_layers:
        params: Any = (jax.ShapeDtypeStruct((depth, width, width), f32),
                       jax.ShapeDtypeStruct((depth, width), f32))
    else:
        params = [(jax.ShapeDtypeStruct((width, width), f32), jax.ShapeDtypeStruct((width,), f32))
                  for _ in range(depth)]
    data = jax.ShapeDtypeStruct((batch, width), f32)
    measured = {}
    for name, policy in resolved.items():
        step = _mlp_train_step(name != "none", policy, scan_layers)
        compiled = jax.jit(step).lower(params, data, data).compile()
        try:
            stats = compiled.memory_analysis()
        except Exception:  # noqa: BLE001  (not every backend reports memory)
            stats = None
        model = jaxpr_flops(jax.make_jaxpr(step)(params, data, data))
        measured[name] = (stats, _xla_flops(compiled), model)
    base_stats, base_flops, base_model = measured["none"]
    base_temp = _attribute(base_stats, "temp_size_in_bytes")
    rows = []
    for name in policies:
        stats, flops, model = measured[name]
        temp = _attribute(stats, "temp_size_in_bytes")
        rows.append(RematRow(
            policy=name, temp_bytes=temp, temp_ratio=_ratio(temp, base_temp),
            flops=flops, flops_ratio=_ratio(flops, base_flops),
            model_flops=model, model_flops_ratio=model / base_model,
            argument_bytes=_attribute(stats, "argument_size_in_bytes"),
            output_bytes=_attribute(stats, "output_size_in_bytes")))
    return rows
