"""KV-cache decoding, sampling filters, beam search and speculative decoding (issue 8)."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from jaxdl import functional
from jaxdl.inference import kv_cache, sampling, speculative
from jaxdl.models.transformer_models import GPT

VOCAB = 11


def tiny_gpt(seed=0, vocab=VOCAB, **options):
    options = {"d_model": 16, "num_layers": 2, "num_heads": 4, **options}
    return functional.split_model(GPT(vocab, 16, rngs=nnx.Rngs(seed), **options))


@functools.partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def incremental_and_full(graphdef, params, state, x, prompt_len):
    """Logits of ``x`` by prefill + one-token steps, and by one full forward."""
    model = nnx.merge(graphdef, params, state)
    cache = kv_cache.init_cache(model, x.shape[0], x.shape[1])
    first, cache = kv_cache.forward(model, x[:, :prompt_len], cache)

    def step(cache, token):
        logits, cache = kv_cache.forward(model, token[:, None], cache)
        return cache, logits[:, 0]

    _, rest = jax.lax.scan(step, cache, x[:, prompt_len:].T)
    return jnp.concatenate([first, rest.transpose(1, 0, 2)], axis=1), model(x)


@pytest.mark.parametrize("options", [
    dict(positional="learned", num_kv_heads=2),
    dict(positional="rope", num_kv_heads=1, scan_layers=True, norm="rmsnorm"),
    dict(positional="alibi", window=4, prenorm=False),
], ids=["learned-gqa", "rope-mqa-scan", "alibi-window-postnorm"])
def test_cache_logits_equal_full_recomputation_every_step(options):
    graphdef, params, state = tiny_gpt(**options)
    x = jax.random.randint(jax.random.key(1), (2, 12), 0, VOCAB)
    incremental, full = incremental_and_full(graphdef, params, state, x, 5)
    np.testing.assert_allclose(incremental, full, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("padding", ["left", "right"])
def test_padded_batch_matches_each_unpadded_row(padding):
    graphdef, params, state = tiny_gpt(positional="sinusoidal", num_kv_heads=2)
    x = np.asarray(jax.random.randint(jax.random.key(2), (3, 10), 1, VOCAB))
    lengths = np.array([7, 4, 6])
    prompt = np.zeros((3, 7), np.int32)
    for i, n in enumerate(lengths):
        if padding == "left":
            prompt[i, 7 - n:] = x[i, :n]
        else:
            prompt[i, :n] = x[i, :n]

    @jax.jit
    def run(params, prompt, lengths, nxt):
        model = nnx.merge(graphdef, params, state)
        last, cache = kv_cache.prefill(model, prompt, lengths, 10, padding=padding)
        steps = []
        for j in range(2):
            logits, cache = kv_cache.forward(model, nxt[:, j:j + 1], cache)
            steps.append(logits[:, 0])
        return last, steps

    nxt = np.stack([x[i, n:n + 2] for i, n in enumerate(lengths)])
    last, steps = run(params, prompt, lengths, nxt)
    full = jax.jit(lambda params, x: nnx.merge(graphdef, params, state)(x))(params, x)
    for i, n in enumerate(lengths):  # causal: the full rows' prefixes are the references
        ref = full[i]
        np.testing.assert_allclose(last[i], ref[n - 1], atol=2e-5)
        np.testing.assert_allclose(steps[0][i], ref[n], atol=2e-5)
        np.testing.assert_allclose(steps[1][i], ref[n + 1], atol=2e-5)


def test_generate_with_cache_equals_recompute_and_beam_width_one():
    graphdef, params, state = tiny_gpt(positional="learned")
    prompt = jax.random.randint(jax.random.key(3), (2, 4), 0, VOCAB)
    lengths = jnp.array([4, 2])
    kw = dict(num_tokens=8, key=jax.random.key(0), lengths=lengths)
    cached = kv_cache.generate(graphdef, params, state, prompt, **kw)
    recomputed = kv_cache.generate(graphdef, params, state, prompt, use_cache=False, **kw)
    np.testing.assert_array_equal(cached, recomputed)
    beams, *_ = sampling.beam_generate(graphdef, params, state, prompt, lengths, num_tokens=8,
                                       beam_width=1, alpha=0.7)
    np.testing.assert_array_equal(beams[:, 0], cached)


def test_sampling_filters_never_leave_the_allowed_set():
    logits = jax.random.normal(jax.random.key(4), (6, 20)) * 2.0
    n = 3000
    keys = jax.random.split(jax.random.key(5), n)
    probs = np.asarray(jax.nn.softmax(logits / 0.7, axis=-1))
    order = np.argsort(-probs, axis=-1)
    for sampler in (sampling.Sampler(temperature=0.7, top_k=4),
                    sampling.Sampler(temperature=0.7, top_p=0.6)):
        draws = np.asarray(jax.jit(jax.vmap(sampler, in_axes=(None, 0)))(logits, keys))
        allowed = np.isfinite(np.asarray(sampler.filtered_logits(logits)))
        for row in range(6):  # reference sets from numpy, by sorting
            if sampler.top_k:
                expected = set(order[row, :4])
            else:
                mass = np.cumsum(probs[row, order[row]])
                expected = set(order[row, :int(np.searchsorted(mass, 0.6)) + 1])
            assert set(np.flatnonzero(allowed[row])) == expected
            assert set(draws[:, row]) <= expected  # never outside
            assert len(set(draws[:, row])) == len(expected)  # and every allowed token seen


def brute_force_best(first, table, eos, n, alpha):
    """Exhaustive best of sequences up to length n ending at eos (or cut at n)."""
    best = None
    logp0, logpt = np.log(first), np.log(table)
    for seq in itertools.product(range(len(first)), repeat=n):
        cut = seq.index(eos) + 1 if eos in seq else n
        seq = seq[:cut]
        lp = logp0[seq[0]] + sum(logpt[a, b] for a, b in zip(seq, seq[1:]))
        score = lp / ((5 + len(seq)) / 6) ** alpha
        if best is None or score > best[0] + 1e-9:
            best = (score, seq)
    return best


def test_length_penalty_changes_ranking_as_the_formula_says():
    np.testing.assert_allclose(sampling.length_penalty(jnp.array([1.0, 7.0]), 0.5),
                               [1.0, np.sqrt(2.0)], rtol=1e-6)
    eos, n = 0, 3
    first = np.array([0.45, 0.5, 0.05])  # stop now, or go on with token 1
    table = np.array([[0.9, 0.05, 0.05], [0.3, 0.65, 0.05], [0.4, 0.3, 0.3]])

    def step_fn(carry, tokens):
        return jnp.log(jnp.asarray(table, jnp.float32))[tokens], carry

    winners = []
    for alpha in (0.0, 3.0):
        tokens, scores, logp, lengths = jax.jit(functools.partial(
            sampling.beam_search, step_fn, beam_width=9, num_tokens=n, eos_id=eos,
            alpha=alpha, take_rows=lambda c, r: c))(
            jnp.zeros(1), jnp.log(jnp.asarray(first, jnp.float32))[None])
        score, seq = brute_force_best(first, table, eos, n, alpha)
        got = tuple(np.asarray(tokens[0, 0, :int(lengths[0, 0])]))
        assert got == seq
        np.testing.assert_allclose(scores[0, 0], score, rtol=1e-5)
        np.testing.assert_allclose(scores[0], logp[0] / ((5 + lengths[0]) / 6) ** alpha,
                                   rtol=1e-5)
        winners.append(got)
    assert winners[0] != winners[1] and len(winners[1]) > len(winners[0])


def exact_first_two(graphdef, params, state, prompt):
    """Exact target marginals of the first and second generated token (temperature 1)."""
    model = nnx.merge(graphdef, params, state)
    p1 = np.asarray(jax.nn.softmax(model(prompt[None])[0, -1]), np.float64)
    seqs = jnp.concatenate([jnp.tile(prompt[None], (len(p1), 1)),
                            jnp.arange(len(p1))[:, None]], axis=1)
    p2_given = np.asarray(jax.nn.softmax(model(seqs)[:, -1]), np.float64)
    return p1, p1 @ p2_given


def test_speculative_decoding_preserves_target_distribution():
    vocab, n = 5, 2000
    target = tiny_gpt(0, vocab, num_layers=1, d_model=8, num_heads=2, positional="learned")
    draft = tiny_gpt(7, vocab, num_layers=1, d_model=8, num_heads=2, positional="learned")
    prompt = jnp.array([1, 3, 2], jnp.int32)
    tokens, stats_ = speculative.speculative_generate(
        target, draft, jnp.tile(prompt[None], (n, 1)), num_tokens=2, k=3,
        key=jax.random.key(0))
    tokens = np.asarray(tokens)
    p1, p2 = exact_first_two(*target, prompt)
    q1, _ = exact_first_two(*draft, prompt)
    assert 0.5 * np.abs(p1 - q1).sum() > 0.3  # total variation: the models disagree
    assert 0.0 < stats_["acceptance_rate"] < 1.0
    for column, expected in ((0, p1), (1, p2)):
        counts = np.bincount(tokens[:, column], minlength=vocab)
        keep = expected * n > 5
        assert counts[~keep].sum() <= 5 + 3 * np.sqrt(n * expected[~keep].sum())
        observed, wanted = counts[keep], expected[keep] / expected[keep].sum()
        p_value = stats.chisquare(observed, wanted * observed.sum()).pvalue
        assert p_value > 1e-3, (column, counts, expected * n)
    # the same test does reject the draft's distribution (it has power at this n)
    assert stats.chisquare(np.bincount(tokens[:, 0], minlength=vocab),
                           q1 / q1.sum() * n).pvalue < 1e-6


def test_bad_options_are_refused_before_compiling():
    graphdef, params, state = tiny_gpt()
    with pytest.raises(ValueError, match="sampler.top_p"):
        sampling.Sampler(top_p=1.5)
    with pytest.raises(ValueError, match="max_len=16"):
        kv_cache.generate(graphdef, params, state, jnp.zeros((1, 10), jnp.int32),
                          num_tokens=10, key=jax.random.key(0))
    with pytest.raises(ValueError, match="padding="):
        kv_cache.generate(graphdef, params, state, jnp.zeros((1, 3), jnp.int32),
                          num_tokens=2, key=jax.random.key(0), padding="middle")
