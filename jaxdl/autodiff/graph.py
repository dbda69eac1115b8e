"""A JAX function as an explicit computational graph (a DAG built from its jaxpr).

A computational graph has one node per value source (function inputs, captured constants)
and per operation, and one edge per tensor flowing from a producer to a consumer. JAX records
this graph when it traces a function: :func:`jax.make_jaxpr` gives the equations of the
program in an order that already respects the data dependencies. :func:`build_graph` turns
those equations into :class:`ComputationGraph`, which supports the classic graph algorithms:
a topological order by Kahn's algorithm (Kahn, 1962, "Topological sorting of large
networks"), levels of mutually independent nodes (the parallelism a scheduler may exploit),
the critical path (span) and a FLOP estimate per node, a forward evaluator that walks the
nodes in topological order, and export to Graphviz DOT and networkx.

Sub-programs (the choice made here, documented once):

* Call-like primitives whose forward semantics is "run this body once" -- ``jit``/``pjit``,
  ``closed_call``, ``custom_jvp_call``, ``custom_vjp_call`` and ``remat`` -- are *inlined*
  (unless ``inline_calls=False``): their body's equations become nodes of the outer graph,
  so the DAG shows the real operations (``jax.nn.relu`` appears as ``max``, not as an opaque
  call). Forward evaluation of an inlined body equals the call; only custom derivative rules
  and rematerialisation policies, which matter for differentiation, are dropped.
* Control flow -- ``scan``, ``while`` and ``cond`` -- stays one node: its body is a loop or a
  choice, not a straight-line DAG. Its FLOPs are the body's FLOPs times the trip count where
  the trip count is static (``scan``: ``length``); ``while`` counts one iteration of condition
  plus body (the trip count is data-dependent), ``cond`` counts its most expensive branch.

FLOP model (multiply and add count separately): ``dot_general`` 2 * prod(out) * prod(
contracting dims); ``conv_general_dilated`` 2 * prod(out) * prod(kernel spatial) *
in_channels / groups; elementwise ops prod(out); reductions the input size; data movement
(reshape, broadcast, transpose, slicing, casts, ...) and unknown primitives 0.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import math
from typing import Any

import jax
import numpy as np
from jax.extend import core as jex_core

__all__ = [
    "ComputationGraph", "Edge", "Node", "Operand", "build_graph", "equation_flops", "jaxpr_flops",
]

# -- FLOP model --------------------------------------------------------------------------
_INLINED = {"jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
            "custom_vjp_call_jaxpr", "remat", "remat2", "checkpoint"}
_ELEMENTWISE = set("""
    add add_any sub mul div rem pow integer_pow max min neg sign floor ceil round is_finite
    exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan atan2 sinh cosh asinh
    acosh atanh sqrt rsqrt cbrt abs erf erfc erf_inv lgamma digamma igamma square nextafter
    eq ne lt le gt ge and or not xor select_n clamp shift_left shift_right_logical
    shift_right_arithmetic population_count real imag conj complex reduce_precision
""".split())
_REDUCTIONS = set("""
    reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor argmax argmin
    cumsum cumprod cummax cummin cumlogsumexp reduce
""".split())


def _size(var: Any) -> int:
    return math.prod(getattr(var.aval, "shape", ()))


def inlinable_body(eqn: Any) -> tuple[Any, list[Any]] | None:
    """``(jaxpr, consts)`` of a call-like equation whose forward pass is its body, else None."""
    if eqn.primitive.name not in _INLINED:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        body = eqn.params.get(key)
        if isinstance(body, jex_core.ClosedJaxpr):
            return body.jaxpr, list(body.consts)
        if isinstance(body, jex_core.Jaxpr):
            return body, []
    return None


def jaxpr_flops(jaxpr: Any) -> int:
    """FLOPs of all equations of a (possibly closed) jaxpr, recursing into sub-jaxprs."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    return sum(equation_flops(eqn)[0] for eqn in jaxpr.eqns)


def equation_flops(eqn: Any) -> tuple[int, str]:
    """``(flops, note)`` for one jaxpr equation under the module's FLOP model."""
    name, params = eqn.primitive.name, eqn.params
    out_size = sum(_size(v) for v in eqn.outvars)
    if name == "dot_general":
        (lhs_contract, _), _ = params["dimension_numbers"]
        lhs_shape = eqn.invars[0].aval.shape
        return 2 * out_size * math.prod(lhs_shape[d] for d in lhs_contract), ""
    if name == "conv_general_dilated":
        rhs_spec = params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
        kernel = eqn.invars[1].aval.shape
        per_output = math.prod(kernel[d] for d in rhs_spec[2:]) * kernel[rhs_spec[1]]
        return 2 * out_size * per_output, ""  # kernel's in-feature dim is in_channels / groups
    if name in _ELEMENTWISE:
        return out_size, ""
    if name in _REDUCTIONS:
        operands = eqn.invars[: max(1, len(eqn.invars) // 2)] if name == "reduce" else eqn.invars
        return sum(_size(v) for v in operands), ""
    if name == "scan":
        body = jaxpr_flops(params["jaxpr"])
        return params["length"] * body, f"{params['length']} x {body:,} body FLOPs"
    if name == "cond":
        per_branch = [jaxpr_flops(b) for b in params["branches"]]
        return max(per_branch), "most expensive branch"
    if name == "while":
        body = jaxpr_flops(params["body_jaxpr"]) + jaxpr_flops(params["cond_jaxpr"])
        return body, "one iteration (trip count is data-dependent)"
    body = inlinable_body(eqn)
    if body is not None:
        return jaxpr_flops(body[0]), "inlinable call"
    subs = list(jex_core.jaxprs_in_params(params))
    if subs:
        return sum(jaxpr_flops(j) for j in subs), "body FLOPs, one execution"
    return 0, ""


@dataclasses.dataclass(frozen=True)
class Operand:
    """Where an operation reads one input: output ``output`` of node ``node``, or a literal."""

    node: int | None
    output: int = 0
    literal: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """One graph node. ``kind`` is ``"input"``, ``"constant"`` or ``"op"``.

    ``name`` is the primitive name for ops and the argument path for inputs; ``shapes`` and
    ``dtypes`` describe each output; ``operands`` (ops only) say where each input comes from.
    """

    id: int
    kind: str
    name: str
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    flops: int = 0
    operands: tuple[Operand, ...] = ()
    primitive: Any = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    value: Any = None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Edge:
    """A tensor of ``shape``/``dtype`` from output ``src_output`` of ``src`` into ``dst``."""

    src: int
    dst: int
    src_output: int
    dst_operand: int
    shape: tuple[int, ...]
    dtype: str


def _short_dtype(dtype: Any) -> str:
    name = np.dtype(dtype).name
    for long, short in (("bfloat", "bf"), ("float", "f"), ("uint", "u"), ("int", "i"),
                        ("complex", "c")):
        if name.startswith(long):
            return short + name[len(long):]
    return name


def _type_str(shape: tuple[int, ...], dtype: str) -> str:
    return f"{_short_dtype(dtype)}[{','.join(map(str, shape))}]"


@dataclasses.dataclass(eq=False)
class ComputationGraph:
    """A DAG of :class:`Node` and :class:`Edge`; ``outputs`` are the function's results."""

    nodes: list[Node]
    edges: list[Edge]
    outputs: tuple[Operand, ...]
    out_tree: Any
    num_inputs: int

    # -- structure ------------------------------------------------------------------------
    def _predecessor_map(self) -> list[list[int]]:
        """For every node, its distinct producers in operand order (one pass over edges)."""
        preds: list[dict[int, None]] = [{} for _ in self.nodes]
        for edge in self.edges:
            preds[edge.dst][edge.src] = None
        return [list(p) for p in preds]

    def predecessors(self, node_id: int) -> list[int]:
        """Distinct producers of ``node_id``'s inputs, in operand order."""
        return self._predecessor_map()[node_id]

    def successors(self, node_id: int) -> list[int]:
        """Distinct consumers of ``node_id``'s outputs."""
        return list(dict.fromkeys(e.dst for e in self.edges if e.src == node_id))

    def topological_order(self) -> list[int]:
        """Node ids such that every edge goes forward (Kahn, 1962); ties by smallest id.

        Raises ValueError if the edges contain a cycle (then no such order exists).
        """
        indegree = [0] * len(self.nodes)
        out_edges: dict[int, list[int]] = collections.defaultdict(list)
        for edge in self.edges:
            indegree[edge.dst] += 1
            out_edges[edge.src].append(edge.dst)
        ready = [n.id for n in self.nodes if indegree[n.id] == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            node_id = heapq.heappop(ready)
            order.append(node_id)
            for dst in out_edges[node_id]:
                indegree[dst] -= 1
                if indegree[dst] == 0:
                    heapq.heappush(ready, dst)
        if len(order) != len(self.nodes):
            stuck = sorted(i for i, d in enumerate(indegree) if d > 0)
            raise ValueError(f"graph has a cycle through nodes {stuck}; it must be a DAG")
        return order

    def depths(self) -> list[int]:
        """Longest-path depth of every node: 0 for sources, else 1 + max over producers."""
        depth = [0] * len(self.nodes)
        preds = self._predecessor_map()
        for node_id in self.topological_order():
            if preds[node_id]:
                depth[node_id] = 1 + max(depth[p] for p in preds[node_id])
        return depth

    def levels(self) -> list[list[int]]:
        """Nodes grouped by depth; no node depends on another of its level (run in parallel)."""
        depth = self.depths()
        grouped: list[list[int]] = [[] for _ in range(max(depth, default=-1) + 1)]
        for node_id, d in enumerate(depth):
            grouped[d].append(node_id)
        return grouped

    def critical_path(self) -> list[int]:
        """One longest chain of dependent nodes, from a source to the deepest node."""
        if not self.nodes:
            return []
        depth, preds = self.depths(), self._predecessor_map()
        node_id = max(range(len(depth)), key=lambda i: (depth[i], -i))
        path = [node_id]
        while depth[node_id] > 0:
            node_id = next(p for p in preds[node_id] if depth[p] == depth[node_id] - 1)
            path.append(node_id)
        return path[::-1]

    @property
    def critical_path_length(self) -> int:
        """Number of dependent operations on the longest chain (the span / minimum steps)."""
        return sum(self.nodes[i].kind == "op" for i in self.critical_path())

    @property
    def op_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "op"]

    @property
    def total_flops(self) -> int:
        """Sum of the per-node FLOP estimates."""
        return sum(n.flops for n in self.nodes)

    def flops_by_primitive(self) -> dict[str, int]:
        """FLOPs summed per primitive name, largest first."""
        totals: dict[str, int] = collections.Counter()
        for node in self.op_nodes:
            totals[node.name] += node.flops
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def dead_nodes(self) -> list[int]:
        """Nodes no output depends on (what dead-code elimination would remove)."""
        live = {o.node for o in self.outputs if o.node is not None}
        preds = self._predecessor_map()
        for node_id in reversed(self.topological_order()):
            if node_id in live:
                live.update(preds[node_id])
        return [n.id for n in self.nodes if n.id not in live and n.kind != "input"]

    # -- forward evaluation ---------------------------------------------------------------
    def intermediates(self, *args: Any, **kwargs: Any) -> dict[int, tuple[Any, ...]]:
        """Every node's outputs for these inputs, computed in topological order.

        ``args``/``kwargs``: pytrees with the structure of the example arguments.
        Each op runs as ``primitive.bind(*invals, **params)``, in the order of
        :meth:`topological_order`.
        """
        leaves = jax.tree.leaves((args, kwargs))
        if len(leaves) != self.num_inputs:
            raise ValueError(f"args: expected {self.num_inputs} array leaves, got {len(leaves)}")
        values: dict[int, tuple[Any, ...]] = {}
        for node, leaf in zip((n for n in self.nodes if n.kind == "input"), leaves):
            if tuple(np.shape(leaf)) != node.shapes[0]:
                raise ValueError(f"args: input {node.name!r} expected shape {node.shapes[0]}, "
                                 f"got {tuple(np.shape(leaf))}")
            values[node.id] = (leaf,)
        for node_id in self.topological_order():
            node = self.nodes[node_id]
            if node.kind == "input":
                continue
            if node.kind == "constant":
                values[node_id] = (node.value,)
            else:
                invals = [self._read(values, o) for o in node.operands]
                out = _bind(node.primitive, node.params, invals)
                values[node_id] = tuple(out) if node.primitive.multiple_results else (out,)
        return values

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        """The function's outputs (same pytree structure), by a topological-order walk."""
        values = self.intermediates(*args, **kwargs)
        outs = [self._read(values, o) for o in self.outputs]
        return jax.tree.unflatten(self.out_tree, outs)

    @staticmethod
    def _read(values: dict[int, tuple[Any, ...]], operand: Operand) -> Any:
        return operand.literal if operand.node is None else values[operand.node][operand.output]

    # -- export ---------------------------------------------------------------------------
    def _label(self, node: Node) -> str:
        types = ", ".join(_type_str(s, d) for s, d in zip(node.shapes, node.dtypes))
        if node.kind == "op":
            return f"{node.name}\\n{types}\\n{node.flops:,} FLOPs"
        return f"{node.kind}: {node.name}\\n{types}"

    def to_dot(self) -> str:
        """Graphviz DOT text; ops are boxes labelled with primitive, shapes and FLOPs."""
        lines = ["digraph computation {", "  rankdir=TB;", "  node [fontname=Helvetica];"]
        shapes = {"input": "ellipse", "constant": "diamond", "op": "box"}
        for node in self.nodes:
            label = self._label(node).replace('"', '\\"')
            lines.append(f'  n{node.id} [shape={shapes[node.kind]}, label="{label}"];')
        for edge in self.edges:
            label = _type_str(edge.shape, edge.dtype)
            lines.append(f'  n{edge.src} -> n{edge.dst} [label="{label}"];')
        for i, out in enumerate(self.outputs):
            lines.append(f'  out{i} [shape=plaintext, label="output {i}"];')
            if out.node is not None:
                lines.append(f"  n{out.node} -> out{i};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_networkx(self) -> Any:
        """A ``networkx.MultiDiGraph`` with node/edge attributes (needs networkx installed)."""
        try:
            import networkx as nx
        except ImportError as err:
            raise ImportError(
                "ComputationGraph.to_networkx needs networkx, which jaxdl does not depend on: "
                "pip install networkx"
            ) from err
        graph = nx.MultiDiGraph()
        for node in self.nodes:
            graph.add_node(node.id, kind=node.kind, name=node.name, shapes=node.shapes,
                           dtypes=node.dtypes, flops=node.flops)
        for edge in self.edges:
            graph.add_edge(edge.src, edge.dst, shape=edge.shape, dtype=edge.dtype,
                           src_output=edge.src_output, dst_operand=edge.dst_operand)
        return graph

    def summary(self) -> str:
        """A text table of the nodes (id, kind, name, output types, FLOPs, level) + totals."""
        depth = self.depths()
        rows = [f"{'id':>4}  {'kind':<8}  {'name':<22}  {'outputs':<28}  {'flops':>14}  level"]
        for node in self.nodes:
            types = ", ".join(_type_str(s, d) for s, d in zip(node.shapes, node.dtypes))
            rows.append(f"{node.id:>4}  {node.kind:<8}  {node.name[:22]:<22}  {types[:28]:<28}  "
                        f"{node.flops:>14,}  {depth[node.id]:>5}")
        span = self.critical_path_length
        ops = len(self.op_nodes)
        rows.append(f"{len(self.nodes)} nodes ({ops} ops), {len(self.edges)} edges, "
                    f"{self.total_flops:,} FLOPs, critical path {span} ops, "
                    f"average parallelism {ops / max(span, 1):.2f}")
        return "\n".join(rows)


def _bind(primitive: Any, eqn_params: dict[str, Any], invals: list[Any]) -> Any:
    """``primitive.bind(*invals, **params)`` for a jaxpr equation's params.

    ``get_bind_params`` turns equation params (e.g. custom_jvp_call's ``call_jaxpr``) into
    bind's (it is the identity for ordinary ops); older jax returned ``(subfuns, params)``.
    """
    bind_params = primitive.get_bind_params(eqn_params)
    if isinstance(bind_params, tuple):
        subfuns, bind_params = bind_params
        return primitive.bind(*subfuns, *invals, **bind_params)
    return primitive.bind(*invals, **bind_params)


class _Builder:
    """Accumulates nodes and edges while walking (possibly nested) jaxprs."""

    def __init__(self, inline_calls: bool):
        self.inline_calls = inline_calls
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []

    def add_node(self, **fields: Any) -> int:
        node_id = len(self.nodes)
        self.nodes.append(Node(id=node_id, **fields))
        return node_id

    def add_constant(self, value: Any) -> Operand:
        shape, dtype = tuple(np.shape(value)), str(jax.numpy.result_type(value))
        return Operand(self.add_node(kind="constant", name="const", shapes=(shape,),
                                     dtypes=(dtype,), value=value))

    def add_jaxpr(self, jaxpr: Any, consts: list[Operand], ins: list[Operand]) -> list[Operand]:
        env: dict[Any, Operand] = dict(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, ins))

        def read(atom: Any) -> Operand:
            return Operand(None, 0, atom.val) if isinstance(atom, jex_core.Literal) else env[atom]

        for eqn in jaxpr.eqns:
            operands = [read(v) for v in eqn.invars]
            body = inlinable_body(eqn) if self.inline_calls else None
            if body is not None:
                inner, inner_consts = body
                outs = self.add_jaxpr(inner, [self.add_constant(c) for c in inner_consts],
                                      operands)
            else:
                outs = self.add_equation(eqn, operands)
            for var, out in zip(eqn.outvars, outs):
                if not isinstance(var, jex_core.DropVar):
                    env[var] = out
        return [read(v) for v in jaxpr.outvars]

    def add_equation(self, eqn: Any, operands: list[Operand]) -> list[Operand]:
        flops, note = equation_flops(eqn)
        node_id = self.add_node(
            kind="op", name=eqn.primitive.name,
            shapes=tuple(tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars),
            dtypes=tuple(str(getattr(v.aval, "dtype", "token")) for v in eqn.outvars),
            flops=flops, operands=tuple(operands), primitive=eqn.primitive,
            params=dict(eqn.params), note=note)
        for position, (operand, var) in enumerate(zip(operands, eqn.invars)):
            if operand.node is not None:
                self.edges.append(Edge(operand.node, node_id, operand.output, position,
                                       tuple(getattr(var.aval, "shape", ())),
                                       str(getattr(var.aval, "dtype", "token"))))
        return [Operand(node_id, i) for i in range(len(eqn.outvars))]


def _input_names(f: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """Readable names for the flattened inputs: parameter name plus the pytree path."""
    try:
        import inspect
        positional = [p.name for p in inspect.signature(f).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        positional = []
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path((args, kwargs))[0]:
        group, key, rest = path[0].idx, path[1], path[2:]
        if group == 0:
            base = positional[key.idx] if key.idx < len(positional) else f"arg{key.idx}"
        else:
            base = str(key.key)
        names.append(base + jax.tree_util.keystr(tuple(rest)))
    return names


def build_graph(f: Any, *example_args: Any, inline_calls: bool = True,
                **kwargs: Any) -> ComputationGraph:
    """Trace ``f(*example_args, **kwargs)`` with :func:`jax.make_jaxpr` into a DAG.

    ``example_args``: pytrees of arrays (or ShapeDtypeStructs, except for evaluation); one
    input node per leaf. ``inline_calls``: inline jit/custom_jvp/custom_vjp/remat bodies (see
    the module docstring). Returns a :class:`ComputationGraph`.
    """
    if not callable(f):
        raise ValueError(f"f: expected a callable, got {type(f).__name__}")
    closed, out_shape = jax.make_jaxpr(f, return_shape=True)(*example_args, **kwargs)
    builder = _Builder(inline_calls)
    names = _input_names(f, example_args, kwargs)
    ins = []
    for name, var in zip(names, closed.jaxpr.invars):
        ins.append(Operand(builder.add_node(
            kind="input", name=name, shapes=(tuple(var.aval.shape),),
            dtypes=(str(var.aval.dtype),))))
    consts = [builder.add_constant(c) for c in closed.consts]
    outputs = builder.add_jaxpr(closed.jaxpr, consts, ins)
    return ComputationGraph(builder.nodes, builder.edges, tuple(outputs),
                            jax.tree.structure(out_shape), len(ins))
