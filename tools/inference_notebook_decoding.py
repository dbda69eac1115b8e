"""Cells of notebooks/07_inference.ipynb on decoding and quantization (issue 8, part 1):
KV cache, sampling strategies, beam search, speculative decoding, int8/int4 weights."""

from notebook_builder import code, md

EXPECT = ("kv-cache max |logit diff|:", "acceptance rate:", "int8 eval loss:")


def cells() -> list:
    return [
        md("## Decoding with a KV cache\n"
           "A character GPT is trained briefly on Tiny Shakespeare (`JAXDL_NOTEBOOK_STEPS` "
           "steps). `jaxdl.inference.kv_cache` keeps every layer's keys and values in a "
           "fixed-size cache `[layers, batch, max_len, kv_heads, head_dim]`: the prompt is "
           "prefilled once, then each new token costs one one-token forward. The logits must "
           "equal those of a full forward over the whole sequence."),
        code("import os, jax, jax.numpy as jnp, numpy as np\n"
             "from flax import nnx\n"
             "from experiments.bench.decode import char_data, train_char_gpt\n"
             "from jaxdl.data import decode, encode\n"
             "from jaxdl.inference import kv_cache, sampling, speculative, quantize\n"
             "STEPS = int(os.environ.get('JAXDL_NOTEBOOK_STEPS', 300))\n"
             "data = char_data()\n"
             "vocab = data[2]\n"
             "target, target_loss = train_char_gpt(dict(d_model=64, num_layers=2, num_heads=4,"
             " num_kv_heads=2), STEPS, max_len=128, data=data)\n"
             "print(f'target eval loss after {STEPS} steps: {target_loss:.3f} nats/char')"),
        code("graphdef, params, state = target\n"
             "x = jnp.asarray(data[1][:2, :40])\n"
             "\n"
             "@jax.jit\n"
             "def both(params, x):\n"
             "    model = nnx.merge(graphdef, params, state)\n"
             "    cache = kv_cache.init_cache(model, x.shape[0], x.shape[1])\n"
             "    first, cache = kv_cache.forward(model, x[:, :8], cache)\n"
             "    def step(cache, token):\n"
             "        logits, cache = kv_cache.forward(model, token[:, None], cache)\n"
             "        return cache, logits[:, 0]\n"
             "    _, rest = jax.lax.scan(step, cache, x[:, 8:].T)\n"
             "    return jnp.concatenate([first, rest.transpose(1, 0, 2)], 1), model(x)\n"
             "\n"
             "incremental, full = both(params, x)\n"
             "print('kv-cache max |logit diff|:', float(jnp.abs(incremental - full).max()))"),
        md("## Sampling strategies and beam search\n"
           "`Sampler` applies temperature, then top-k, then top-p (nucleus) filtering; "
           "`beam_generate` runs beam search with the GNMT length penalty "
           "`((5 + |Y|) / 6) ** alpha` on the same cache. Prompts of different lengths are "
           "batched with padding (`lengths=`)."),
        code("prompt_text = ['ROMEO:\\n', 'KING:\\n']\n"
             "width = max(map(len, prompt_text))\n"
             "prompt = np.zeros((2, width), np.int32)\n"
             "for i, t in enumerate(prompt_text):\n"
             "    prompt[i, width - len(t):] = encode(t, vocab)  # left padding\n"
             "lengths = np.array([len(t) for t in prompt_text])\n"
             "for name, sampler in {'greedy': sampling.Sampler(greedy=True),\n"
             "                      'temperature 0.8': sampling.Sampler(temperature=0.8),\n"
             "                      'top-k 5': sampling.Sampler(top_k=5),\n"
             "                      'top-p 0.8': sampling.Sampler(top_p=0.8)}.items():\n"
             "    out = kv_cache.generate(*target, prompt, lengths, num_tokens=60, "
             "key=jax.random.key(0), sampler=sampler)\n"
             "    print(f'--- {name}'); print(prompt_text[1] + decode(np.asarray(out[1]), vocab))\n"
             "beams, scores, _, _ = sampling.beam_generate(*target, prompt[:1, -7:], "
             "num_tokens=60, beam_width=4, alpha=0.6)\n"
             "print('--- beam 4:', np.asarray(scores[0]).round(3))\n"
             "print(prompt_text[0] + decode(np.asarray(beams[0, 0]), vocab))"),
        md("## Speculative decoding\n"
           "A one-layer draft proposes `k` tokens, the target checks them in one pass over "
           "`k + 1` positions and keeps each with probability `min(1, p/q)`, resampling "
           "from `max(0, p - q)` at the first rejection: the output follows the target's "
           "distribution exactly (Leviathan et al., 2023; Chen et al., 2023)."),
        code("draft, draft_loss = train_char_gpt(dict(d_model=32, num_layers=1, num_heads=2), "
             "STEPS, seed=1, max_len=128, data=data)\n"
             "tokens, stats = speculative.speculative_generate(target, draft, prompt[:1], "
             "num_tokens=60, k=4, key=jax.random.key(1))\n"
             "print(f\"draft eval loss {draft_loss:.3f}; acceptance rate: "
             "{stats['acceptance_rate']:.2f}\")\n"
             "print(prompt_text[0] + decode(np.asarray(tokens[0]), vocab))"),
        md("## Weight-only quantization\n"
           "int8 with one scale per output channel, int4 with one scale per group of inputs "
           "(two values packed per byte). Each weight moves by at most half a step "
           "(`scale / 2`)."),
        code("import matplotlib.pyplot as plt, optax\n"
             "ev = jnp.asarray(data[1][:64])\n"
             "loss = jax.jit(lambda p: optax.softmax_cross_entropy_with_integer_labels(\n"
             "    nnx.merge(graphdef, p, state)(ev[:, :-1]), ev[:, 1:]).mean())\n"
             "rows = {'float32': params, 'int8': quantize.quantize_params(params, 8),\n"
             "        'int4 g32': quantize.quantize_params(params, 4, group_size=32)}\n"
             "losses = {k: float(loss(quantize.dequantize_params(v))) for k, v in rows.items()}\n"
             "sizes = {k: quantize.param_bytes(v) / 1024 for k, v in rows.items()}\n"
             "print('int8 eval loss:', round(losses['int8'], 4), 'float:', "
             "round(losses['float32'], 4), 'int4:', round(losses['int4 g32'], 4))\n"
             "fig, axes = plt.subplots(1, 2, figsize=(8, 3))\n"
             "axes[0].bar(list(sizes), list(sizes.values())); axes[0].set_ylabel('KiB')\n"
             "axes[1].bar(list(losses), list(losses.values())); "
             "axes[1].set_ylabel('eval loss')\n"
             "axes[1].set_ylim(min(losses.values()) - 0.05, max(losses.values()) + 0.05)\n"
             "plt.tight_layout(); plt.show()"),
    ]
