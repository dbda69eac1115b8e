"""Decoding strategies on a trained character GPT (issue 8).

``decoding_strategies``: train ``train`` (a GPT config on tinyshakespeare) with
``jaxdl.train.train_and_evaluate``, then continue a prompt with each strategy of
:mod:`jaxdl.inference.sampling` on the KV-cache decoder: greedy, temperature sampling,
top-k (Fan et al., 2018), nucleus / top-p (Holtzman et al., 2020) and beam search with the
GNMT length penalty (Wu et al., 2016). For each: the samples, their perplexity under the
model itself at temperature 1 (low = the model finds the text likely, typically repetitive),
and distinct-2 (unique character bigrams / bigrams, a diversity proxy).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.analyses.registry import ANALYSES
from jaxdl import functional
from jaxdl.data import decode as decode_text
from jaxdl.data import encode as encode_text
from jaxdl.inference import kv_cache, sampling
from jaxdl.train import train_and_evaluate

STRATEGIES = {
    "greedy": sampling.Sampler(greedy=True),
    "temperature_0.7": sampling.Sampler(temperature=0.7),
    "temperature_1.0": sampling.Sampler(temperature=1.0),
    "top_k_10": sampling.Sampler(top_k=10),
    "top_p_0.9": sampling.Sampler(top_p=0.9),
}


def self_perplexity(graphdef, params, state, prompt, tokens) -> float:
    """exp(mean NLL) of ``tokens [b, n]`` after ``prompt [b, P]`` under the model."""
    seq = jnp.concatenate([prompt, tokens], axis=1)
    logits = jax.jit(lambda p, x: functional.merge_model(graphdef, p, state)(x))(params, seq)
    logp = jax.nn.log_softmax(logits[:, prompt.shape[1] - 1:-1], axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[..., None], axis=-1).mean()
    return float(jnp.exp(nll))


def distinct_2(rows) -> float:
    pairs = [tuple(r[i:i + 2]) for r in rows for i in range(len(r) - 1)]
    return len(set(pairs)) / max(len(pairs), 1)


@ANALYSES.register("decoding_strategies")
def decoding_strategies(*, workdir: pathlib.Path, seed: int, train, prompt: str = "ROMEO:\n",
                        num_samples: int = 4, sample_length: int = 56, beam_width: int = 4,
                        length_alpha: float = 0.6) -> dict[str, Any]:
    start = time.perf_counter()
    result = train_and_evaluate(train, pathlib.Path(workdir) / "train")
    seconds = time.perf_counter() - start
    exp, state = result.experiment, result.state
    graphdef, params, model_state = exp.graphdef, state.params, state.model_state
    vocab = exp.dataset.info["vocab"]
    ids = jnp.tile(jnp.asarray(encode_text(prompt, vocab))[None], (num_samples, 1))
    key = jax.random.key(seed)
    strategies, samples = {}, {}
    for name, sampler in STRATEGIES.items():
        tokens = kv_cache.generate(graphdef, params, model_state, ids, num_tokens=sample_length,
                                   key=key, sampler=sampler)
        rows = np.asarray(tokens)
        samples[name] = [prompt + decode_text(r, vocab) for r in rows]
        strategies[name] = {"self_perplexity": self_perplexity(graphdef, params, model_state,
                                                               ids, tokens),
                            "distinct_2": distinct_2(rows.tolist())}
    beams, scores, _, _ = sampling.beam_generate(
        graphdef, params, model_state, ids[:1], num_tokens=sample_length, beam_width=beam_width,
        eos_id=None, alpha=length_alpha)
    best = beams[:, 0]
    name = f"beam_{beam_width}"
    samples[name] = [prompt + decode_text(np.asarray(best[0]), vocab)]
    strategies[name] = {"self_perplexity": self_perplexity(graphdef, params, model_state,
                                                           ids[:1], best),
                        "distinct_2": distinct_2(np.asarray(best).tolist())}
    loss = result.eval_metrics["loss"]
    summary = {"eval_loss_nats_per_char": loss, "eval_perplexity": float(np.exp(loss)),
               "train_seconds_including_compile": seconds, "strategies": strategies,
               "first_sample": {k: v[0][:120] for k, v in samples.items()}}
    text = "\n\n".join(f"== {k} ==\n" + "\n---\n".join(v) for k, v in samples.items())
    (pathlib.Path(workdir) / "samples.txt").write_text(text)
    return {"summary": summary, "samples": samples, "figures": ["train/curves.png"]}
