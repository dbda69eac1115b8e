"""Inference: KV-cache decoding, sampling strategies, beam search, speculative decoding and
weight-only quantization for the GPT of :mod:`jaxdl.models.transformer_models`."""

from jaxdl.inference.kv_cache import KVCache, forward, generate, init_cache, prefill
from jaxdl.inference.sampling import Sampler, beam_generate, beam_search, length_penalty

__all__ = ["KVCache", "Sampler", "beam_generate", "beam_search", "forward", "generate",
           "init_cache", "length_penalty", "prefill"]
