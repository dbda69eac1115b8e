"""Computational graphs from jaxprs: structure, order, levels, FLOPs, evaluation, export."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl.autodiff.graph as graph_lib
from jaxdl.autodiff.graph import ComputationGraph, Edge, Node, Operand, build_graph


def textbook_f(x, y):
    return (x**2 + y) * (x - y)


def mlp(params, x):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


B, D_IN, H, D_OUT = 4, 5, 6, 3


def mlp_args(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"w1": (D_IN, H), "b1": (H,), "w2": (H, D_OUT), "b2": (D_OUT,)}
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    return params, rng.normal(size=(B, D_IN)).astype(np.float32)


def assert_edges_go_forward(graph, order):
    position = {node_id: i for i, node_id in enumerate(order)}
    assert sorted(order) == list(range(len(graph.nodes)))
    for edge in graph.edges:
        assert position[edge.src] < position[edge.dst], edge


def test_textbook_graph_structure_and_evaluation():
    graph = build_graph(textbook_f, 2.0, 1.0)
    assert [n.kind for n in graph.nodes] == ["input", "input", "op", "op", "op", "op"]
    assert [n.name for n in graph.nodes] == ["x", "y", "integer_pow", "add", "sub", "mul"]
    # x feeds x**2 and x-y, y feeds +y and x-y, and the two branches feed the product.
    assert sorted((e.src, e.dst) for e in graph.edges) == [
        (0, 2), (0, 4), (1, 3), (1, 4), (2, 3), (3, 5), (4, 5)]
    assert float(graph.evaluate(2.0, 1.0)) == 5.0 == float(textbook_f(2.0, 1.0))
    assert float(graph.evaluate(3.0, -1.0)) == float(textbook_f(3.0, -1.0)) == 32.0
    assert graph.total_flops == 4


def test_topological_order_levels_and_critical_path():
    graph = build_graph(textbook_f, 2.0, 1.0)
    assert_edges_go_forward(graph, graph.topological_order())
    levels = graph.levels()
    assert levels == [[0, 1], [2, 4], [3], [5]]
    names = {graph.nodes[i].name: d for d, level in enumerate(levels) for i in level}
    assert names["integer_pow"] == names["sub"]  # x**2 and x - y can run in parallel
    assert graph.critical_path() == [0, 2, 3, 5]
    assert graph.critical_path_length == 3


def test_levels_hold_independent_nodes_on_an_mlp():
    params, x = mlp_args()
    graph = build_graph(mlp, params, x)
    assert_edges_go_forward(graph, graph.topological_order())
    depth = {i: d for d, level in enumerate(graph.levels()) for i in level}
    for edge in graph.edges:  # every edge strictly increases the level
        assert depth[edge.src] < depth[edge.dst]
    for node_id in range(len(graph.nodes)):
        preds = graph.predecessors(node_id)
        expected = 1 + max(depth[p] for p in preds) if preds else 0
        assert depth[node_id] == expected


def test_cycle_is_rejected():
    nodes = [Node(0, "input", "x", ((),), ("float32",)),
             Node(1, "op", "neg", ((),), ("float32",), operands=(Operand(2),)),
             Node(2, "op", "neg", ((),), ("float32",), operands=(Operand(1),))]
    edges = [Edge(1, 2, 0, 0, (), "float32"), Edge(2, 1, 0, 0, (), "float32")]
    graph = ComputationGraph(nodes, edges, (Operand(2),), jax.tree.structure(0), 1)
    with pytest.raises(ValueError, match="cycle"):
        graph.topological_order()


def test_mlp_dot_flops_are_exact_and_evaluate_matches():
    params, x = mlp_args()
    graph = build_graph(mlp, params, x)
    dots = [n for n in graph.op_nodes if n.name == "dot_general"]
    assert len(dots) == 2
    assert sum(n.flops for n in dots) == 2 * B * (D_IN * H + H * D_OUT)
    # relu is a custom_jvp function: inlined, it shows up as `max`; bias adds are elementwise.
    assert "custom_jvp_call" not in {n.name for n in graph.nodes}
    assert graph.flops_by_primitive()["max"] == B * H
    assert graph.total_flops == 2 * B * (D_IN * H + H * D_OUT) + 2 * B * H + B * D_OUT
    new_params, new_x = mlp_args(seed=1)
    np.testing.assert_allclose(graph.evaluate(new_params, new_x), mlp(new_params, new_x),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(graph.evaluate)(new_params, new_x),
                               mlp(new_params, new_x), rtol=1e-6, atol=1e-6)
    assert graph.nodes[0].name.startswith("params[")  # inputs are named by argument path


def test_intermediates_are_the_values_on_the_edges():
    graph = build_graph(textbook_f, 2.0, 1.0)
    values = graph.intermediates(2.0, 1.0)
    assert [float(values[i][0]) for i in range(6)] == [2.0, 1.0, 4.0, 5.0, 1.0, 5.0]
    with pytest.raises(ValueError, match="args"):
        graph.evaluate(2.0)
    with pytest.raises(ValueError, match="expected shape"):
        graph.evaluate(np.ones(3), 1.0)


def test_custom_jvp_and_scan_build_with_scan_as_one_node():
    n, d, length = 3, 4, 5

    def f(x, w):
        h = jax.nn.relu(x @ w)

        def body(carry, _):
            return jnp.tanh(carry @ w), carry.sum()

        carry, sums = jax.lax.scan(body, h, None, length=length)
        return carry.sum() + sums.sum()

    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    w = 0.3 * np.eye(d, dtype=np.float32)
    graph = build_graph(f, x, w)
    scans = [node for node in graph.nodes if node.name == "scan"]
    assert len(scans) == 1
    body_flops = 2 * n * d * d + n * d + n * d  # dot, tanh, reduce_sum over the carry
    assert scans[0].flops == length * body_flops
    assert "max" in {node.name for node in graph.nodes}
    np.testing.assert_allclose(graph.evaluate(x, w), f(x, w), rtol=1e-6)

    opaque = build_graph(f, x, w, inline_calls=False)
    calls = [node for node in opaque.nodes if node.name == "custom_jvp_call"]
    assert len(calls) == 1 and calls[0].flops == n * d  # the relu body's `max`
    assert opaque.total_flops == graph.total_flops
    np.testing.assert_allclose(opaque.evaluate(x, w), f(x, w), rtol=1e-6)


def test_custom_vjp_remat_and_jit_bodies_are_inlined():
    @jax.custom_vjp
    def sin(x):
        return jnp.sin(x)

    sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))

    def f(x):
        y = jax.checkpoint(lambda z: jnp.tanh(z) * 2.0)(sin(x))
        return jax.jit(lambda a: a * 3.0)(y)

    x = jnp.arange(3.0)
    flat = build_graph(f, x)
    assert [n.name for n in flat.nodes] == ["x", "sin", "tanh", "mul", "mul"]
    opaque = build_graph(f, x, inline_calls=False)
    names = [n.name for n in opaque.nodes]  # primitive names vary a little across jax versions
    assert names[:2] == ["x", "custom_vjp_call"] and len(names) == 4
    assert names[2] in ("remat2", "checkpoint", "remat") and names[3] in ("jit", "pjit")
    assert flat.total_flops == opaque.total_flops == 4 * x.size
    for graph in (flat, opaque):
        np.testing.assert_allclose(graph.evaluate(x), f(x), rtol=1e-6)


def test_cond_counts_costliest_branch_and_constants_become_nodes():
    table = np.arange(4.0, dtype=np.float32)

    def f(x):
        y = jax.lax.cond(x.sum() > 0, lambda a: a * a - 1.0, lambda a: a + 1.0, x)
        return y * jnp.asarray(table)

    x = jnp.array([1.0, -2.0, 3.0, 0.5])
    graph = build_graph(f, x)
    (cond,) = [node for node in graph.nodes if node.name == "cond"]
    assert cond.flops == 2 * x.size
    consts = [node for node in graph.nodes if node.kind == "constant"]
    assert len(consts) == 1 and consts[0].shapes == ((4,),)
    np.testing.assert_allclose(graph.evaluate(x), f(x))
    np.testing.assert_allclose(graph.evaluate(-x), f(-x))


def test_conv_and_batched_dot_flops():
    n, c, hw, out_c, k, groups = 2, 4, 6, 6, 3, 2
    lhs = jnp.ones((n, c, hw, hw))
    rhs = jnp.ones((out_c, c // groups, k, k))

    def conv(a, b):
        return jax.lax.conv_general_dilated(a, b, (1, 1), "VALID", feature_group_count=groups)

    out_size = n * out_c * (hw - k + 1) ** 2
    (node,) = build_graph(conv, lhs, rhs).op_nodes
    assert node.flops == 2 * out_size * k * k * c // groups

    a, b = jnp.ones((3, 5, 7)), jnp.ones((3, 7, 2))
    (dot,) = build_graph(lambda a, b: jnp.einsum("bij,bjk->bik", a, b), a, b).op_nodes
    assert dot.name == "dot_general" and dot.flops == 2 * 3 * 5 * 7 * 2


def test_dead_nodes_are_the_unused_computation():
    def f(x, w):
        unused = jnp.tanh(x @ w)  # noqa: F841
        return jnp.sin(x).sum()

    graph = build_graph(f, jnp.ones((3, 3)), jnp.ones((3, 3)))
    assert sorted(graph.nodes[i].name for i in graph.dead_nodes()) == ["dot_general", "tanh"]


def test_dot_and_summary_name_every_node():
    params, x = mlp_args()
    graph = build_graph(mlp, params, x)
    dot = graph.to_dot()
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for node in graph.nodes:
        assert f"  n{node.id} [" in dot
        assert node.name in dot
    for edge in graph.edges:
        assert f"n{edge.src} -> n{edge.dst} " in dot
    assert f"{2 * B * D_IN * H:,} FLOPs" in dot
    summary = graph.summary()
    assert len(summary.splitlines()) == len(graph.nodes) + 2
    assert f"{graph.total_flops:,} FLOPs" in summary


def test_to_networkx_round_trip():
    nx = pytest.importorskip("networkx")
    graph = build_graph(textbook_f, 2.0, 1.0)
    nx_graph = graph.to_networkx()
    assert nx_graph.number_of_nodes() == 6 and nx_graph.number_of_edges() == 7
    assert nx.is_directed_acyclic_graph(nx_graph)


def test_to_networkx_without_networkx_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "networkx", None)  # makes `import networkx` fail
    with pytest.raises(ImportError, match="pip install networkx"):
        build_graph(textbook_f, 2.0, 1.0).to_networkx()


def test_bad_function_is_rejected():
    with pytest.raises(ValueError, match="f: expected a callable"):
        graph_lib.build_graph(3, 1.0)
