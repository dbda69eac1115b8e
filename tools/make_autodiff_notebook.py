"""Write notebooks/01_autodiff.ipynb (run from the repository root; outputs are not stored)."""

from notebook_builder import code, install_cell, md, write_notebook

cells = [
    md("# Autodiff with jaxdl: graphs, forward vs reverse mode, HVPs, gradient checking\n\n"
       "A tour of `jaxdl.autodiff` (book chapters 91-92). Everything here is a pure function "
       "of pytrees that runs under `jax.jit`, on CPU, GPU or TPU (Colab)."),
    install_cell(),
    code("import os, time\n"
         "import jax, jax.numpy as jnp, numpy as np\n"
         "import matplotlib.pyplot as plt\n"
         "from flax import nnx\n"
         "from jaxdl import autodiff, functional\n"
         "from jaxdl.autodiff import tape\n"
         "from jaxdl.data import load_dataset\n"
         "from jaxdl.models import MODELS\n"
         "SMALL = 'JAXDL_NOTEBOOK_STEPS' in os.environ  # the test suite runs a tiny version\n"
         "digits = load_dataset('digits')\n"
         "batch = {k: v[:128] for k, v in digits.train.items()}\n"
         "model = MODELS.build({'name': 'mlp', 'hidden': (16,)}, field='model',\n"
         "                     input_shape=digits.input_shape, num_classes=10, rngs=nnx.Rngs(0))\n"
         "graphdef, params, state = functional.split_model(model)\n"
         "loss_fn = autodiff.model_loss_fn(graphdef, state, batch)  # f(params) -> scalar\n"
         "print('parameters:', sum(p.size for p in jax.tree.leaves(params)))"),
    md("## 1. The computational graph of a loss\n"
       "`build_graph` turns the jaxpr JAX records while tracing into a DAG: one node per "
       "input and operation, one edge per tensor. Kahn's algorithm gives an evaluation "
       "order; nodes of the same *level* do not depend on each other and could run in "
       "parallel; the critical path bounds any schedule."),
    code("graph = autodiff.build_graph(loss_fn, params)\n"
         "print(graph.summary())\n"
         "levels = graph.levels()\n"
         "print('levels:', len(levels), ' widest level:', max(map(len, levels)))\n"
         "print('forward evaluation equals the function:',\n"
         "      bool(jnp.allclose(graph.evaluate(params), loss_fn(params))))\n"
         "print(graph.to_dot()[:300], '...')"),
    md("## 2. Forward vs reverse mode\n"
       "A Jacobian `[n_out, n_in]` costs about `n_in` forward-mode passes or `n_out` "
       "reverse-mode passes. `autodiff.jacobian(mode='auto')` picks the cheaper one; here we "
       "time both on a map with few inputs and many outputs, and on the reverse shape."),
    code("def timed(fn, x, repeats=5):\n"
         "    fn(x).block_until_ready()  # compile\n"
         "    start = time.perf_counter()\n"
         "    for _ in range(repeats):\n"
         "        fn(x).block_until_ready()\n"
         "    return (time.perf_counter() - start) / repeats\n"
         "n = 16 if SMALL else 64\n"
         "wide = jax.random.normal(jax.random.key(0), (n, 64 * n))\n"
         "cases = {'few in, many out': (lambda x: jnp.tanh(x @ wide), jnp.ones(n)),\n"
         "         'many in, few out': (lambda x: jnp.tanh(wide @ x), jnp.ones(64 * n))}\n"
         "times = {}\n"
         "for name, (f, x) in cases.items():\n"
         "    for mode in ('forward', 'reverse'):\n"
         "        times[name, mode] = timed(jax.jit(lambda x, f=f, mode=mode:\n"
         "                                          autodiff.jacobian(f, x, mode=mode)), x)\n"
         "    print(f'{name}: auto picks', autodiff.products.choose_jacobian_mode(\n"
         "        x.size, f(x).size))\n"
         "fig, ax = plt.subplots(figsize=(6, 3))\n"
         "labels = [f'{a}\\n{b}' for a, b in times]\n"
         "ax.bar(labels, [1e3 * t for t in times.values()])\n"
         "ax.set_ylabel('ms per Jacobian'); ax.set_title('forward vs reverse mode')\n"
         "plt.show()"),
    md("## 3. Hessian-vector products and the spectrum\n"
       "Forward-over-reverse gives `H v` for a few gradients' cost, without the `[P, P]` "
       "matrix. For this small model we can still form `H` and compare; Lanczos finds the "
       "top eigenvalues from HVPs alone, Hutchinson estimates the trace."),
    code("v = jax.tree.map(jnp.ones_like, params)\n"
         "hvp = jax.jit(lambda v: autodiff.hessian_vector_product(loss_fn, params, v))\n"
         "dense, unravel = autodiff.hessian(loss_fn, params)\n"
         "flat_v = jax.flatten_util.ravel_pytree(v)[0]\n"
         "flat_hv = jax.flatten_util.ravel_pytree(hvp(v))[0]\n"
         "print('HVP vs dense H @ v, max abs diff:', float(jnp.max(jnp.abs(flat_hv - dense @ "
         "flat_v))))\n"
         "top = autodiff.top_eigenvalues(hvp, params, jax.random.key(1), k=3, num_iters=30)\n"
         "print('Lanczos top-3:', np.round(np.asarray(top), 4))\n"
         "print('eigh top-3:   ', np.round(np.linalg.eigvalsh(np.asarray(dense, np.float64))"
         "[::-1][:3], 4))\n"
         "trace, err = autodiff.hutchinson_trace(hvp, params, jax.random.key(2), 100)\n"
         "print(f'Hutchinson trace {float(trace):.3f} +- {float(err):.3f}, exact '\n"
         "      f'{float(jnp.trace(dense)):.3f}')"),
    md("## 4. Gradient checking\n"
       "Central differences in float64 against `jax.grad`, leaf by leaf. A deliberately "
       "wrong `custom_vjp` (the backward rule of `sin` returning `+sin` instead of `cos`) "
       "is caught."),
    code("report = autodiff.check_gradients(lambda p, b: autodiff.model_loss_fn(\n"
         "    graphdef, state, b)(p), params, batch)\n"
         "print(report)\n"
         "@jax.custom_vjp\n"
         "def bad_sin(x):\n"
         "    return jnp.sin(x)\n"
         "bad_sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.sin(x),))\n"
         "buggy = autodiff.check_gradients(lambda p: jnp.sum(bad_sin(p['w']) ** 2),\n"
         "                                 {'w': jnp.linspace(0.1, 1.0, 5)})\n"
         "print('buggy rule caught:', not buggy.passed, buggy.failing)"),
    md("## 5. A tape engine next to JAX\n"
       "`jaxdl.autodiff.tape` records every operation on a Wengert list as it runs and "
       "replays it backwards: the define-by-run design. Its gradients equal `jax.grad`'s, "
       "and it can train a small MLP on digits."),
    code("x, y = np.asarray(batch['x']).reshape(128, -1), np.asarray(batch['y'])\n"
         "losses = tape.train_tiny_mlp(x, y, hidden=32, steps=40 if SMALL else 300, lr=0.5)\n"
         "print(f'tape-trained MLP: loss {losses[0]:.3f} -> {losses[-1]:.3f}')\n"
         "plt.figure(figsize=(5, 3)); plt.plot(losses); plt.xlabel('step')\n"
         "plt.ylabel('cross-entropy'); plt.title('training on the tape engine'); plt.show()"),
    md("## 6. What XLA does to the graph, and what remat costs\n"
       "XLA fuses elementwise chains into one kernel and folds constants; "
       "`jax.checkpoint` trades recomputation for activation memory."),
    code("from jaxdl.autodiff import xla_view\n"
         "fusion = xla_view.fusion_example()\n"
         "print(f'fusion: {fusion.before_total} ops before, {fusion.after_total} after, '\n"
         "      f'{fusion.fusions} fusion(s)')\n"
         "rows = autodiff.remat_memory_report(depth=8 if SMALL else 32, width=128, batch=64,\n"
         "                                    policies=('none', 'full'))\n"
         "for row in rows:\n"
         "    print(f'{row.policy:>5}: temp memory ratio {row.temp_ratio}, model FLOP ratio '\n"
         "          f'{row.model_flops_ratio:.2f}')"),
]

write_notebook(cells, "notebooks/01_autodiff.ipynb",
               expect=("HVP vs dense H @ v", "buggy rule caught: True", "PASSED",
                       "forward evaluation equals the function: True"))
