"""Write notebooks/04_transformers.ipynb (run from the repository root; outputs not stored)."""

from notebook_builder import code, install_cell, md, write_notebook

cells = [
    md("# Transformers in jaxdl\n\n"
       "Attention with masks, a character-level GPT trained with the one training loop, its "
       "attention maps, and blockwise (flash-style) attention checked against the naive "
       "form. Runs on CPU, GPU or TPU (Colab).\n\n"
       "Set `JAXDL_SOURCE` to a pip requirement for jaxdl if it is not installed yet; the "
       "Tiny Shakespeare text is read from `JAXDL_DATA_DIR`."),
    install_cell(),
    code("import os, pathlib, tempfile\n"
         "NUM_STEPS = int(os.environ.get('JAXDL_NOTEBOOK_STEPS', 600))\n"
         "WORKDIR = pathlib.Path(os.environ.get('JAXDL_NOTEBOOK_WORKDIR') or "
         "tempfile.mkdtemp(prefix='jaxdl-transformers-'))\n"
         "print(NUM_STEPS, WORKDIR)"),
    md("## Attention and its masks\n"
       "`attend` takes queries `[batch, q_len, heads, d]` and keys/values with possibly fewer "
       "heads (grouped-query attention). The mask is described by keywords: `causal`, "
       "`window` (sliding window), `key_mask` (padding), `block_layout` (block-sparse)."),
    code("import jax, jax.numpy as jnp, numpy as np\n"
         "from jaxdl.models.attention import attend\n"
         "q, k, v = (jax.random.normal(key, (1, 8, 2, 4)) for key in "
         "jax.random.split(jax.random.key(0), 3))\n"
         "for name, kw in {'causal': dict(causal=True), 'window 3': dict(causal=True, window=3),"
         "\n                 'padding': dict(key_mask=jnp.arange(8)[None] < 5)}.items():\n"
         "    _, w = attend(q, k, v, return_weights=True, **kw)\n"
         "    print(name, '\\n', (np.asarray(w[0, 0]) > 0).astype(int))"),
    md("## A character-level GPT on Tiny Shakespeare\n"
       "The experiment config `char_gpt` through `train_and_evaluate`, shortened here."),
    code("from jaxdl.config import load_config_file\n"
         "from jaxdl.train import train_and_evaluate\n"
         "config = load_config_file('experiments/configs/char_gpt.py')\n"
         "config.num_steps = NUM_STEPS\n"
         "config.eval_every = config.checkpoint_every = NUM_STEPS\n"
         "config.optimizer.warmup_steps = min(50, NUM_STEPS // 4)\n"
         "config.progress_bar = False\n"
         "result = train_and_evaluate(config, WORKDIR)\n"
         "print(f\"validation loss: {result.eval_metrics['loss']:.3f} nats/char\")"),
    md("## Sampling\nTemperature sampling, re-running the model on its growing context "
       "(issue 8 brings the KV cache)."),
    code("from jaxdl import functional\n"
         "from jaxdl.data import decode, encode\n"
         "experiment, state = result.experiment, result.state\n"
         "vocab = experiment.dataset.info['vocab']\n"
         "seq_len = experiment.dataset.input_shape[0]\n"
         "logits_fn = jax.jit(lambda x: functional.apply(experiment.graphdef, state.params, "
         "state.model_state, x)[0])\n"
         "ids = list(encode('ROMEO:\\n', vocab))\n"
         "key = jax.random.key(0)\n"
         "for _ in range(120):\n"
         "    context = np.zeros((1, seq_len), np.int32)\n"
         "    window = ids[-seq_len:]\n"
         "    context[0, :len(window)] = window\n"
         "    logits = logits_fn(context)[0, len(window) - 1] / 0.8\n"
         "    key, sub = jax.random.split(key)\n"
         "    ids.append(int(jax.random.categorical(sub, logits)))\n"
         "print(decode(np.array(ids), vocab))"),
    md("## Attention maps\nEvery layer and head of the trained model on a line of text "
       "(rows: queries, columns: keys; the causal mask leaves the upper triangle empty)."),
    code("from IPython.display import Image, display\n"
         "from jaxdl.models.attention_maps import attention_maps, plot_attention_maps\n"
         "text = 'First Citizen:\\nBefore we proceed'\n"
         "x = np.zeros((1, seq_len), np.int32)\n"
         "x[0, :len(text)] = encode(text, vocab)\n"
         "maps = attention_maps(experiment.graphdef, state.params, state.model_state, x)\n"
         "n = len(text)\n"
         "path = plot_attention_maps(maps[:, 0, :, :n, :n], WORKDIR / 'attention.png', "
         "labels=list(text), title='char GPT')\n"
         "display(Image(filename=str(path)))"),
    md("## Blockwise attention\nThe FlashAttention algorithm in pure JAX: the same outputs "
       "and gradients as the naive form, without the `[seq, seq]` matrix."),
    code("shape = (1, 512, 4, 32)\n"
         "q, k, v = (jax.random.normal(key, shape) for key in "
         "jax.random.split(jax.random.key(1), 3))\n"
         "def compiled(impl):\n"
         "    loss = lambda q, k, v: attend(q, k, v, implementation=impl, causal=True, "
         "block_size=128).sum()\n"
         "    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))\n"
         "    return step.lower(q, k, v).compile()\n"
         "naive, block = compiled('naive'), compiled('blockwise')\n"
         "(a, ga), (b, gb) = naive(q, k, v), block(q, k, v)\n"
         "diff = max(float(jnp.abs(x - y).max()) for x, y in zip(ga, gb))\n"
         "print(f'blockwise max difference: value {abs(float(a - b)):.2e}, grads {diff:.2e}')\n"
         "for impl, fn in (('naive', naive), ('blockwise', block)):\n"
         "    mem = fn.memory_analysis().temp_size_in_bytes\n"
         "    print(f'{impl:9s} temp memory: {mem / 2**20:.1f} MiB')"),
]

write_notebook(cells, "notebooks/04_transformers.ipynb",
               expect=("validation loss:", "blockwise max difference:", "temp memory"))
