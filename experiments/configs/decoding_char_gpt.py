"""Decoding strategies (greedy, temperature, top-k, top-p, beam + length penalty) on a
briefly trained character GPT, with the KV-cache decoder (issue 8).

Command:   python -m experiments.analyze --config decoding_char_gpt
Output:    runs/decoding_char_gpt/{results.json, samples.txt, train/}
Runtime:   3 min 12 s wall (training 200 steps 137 s, compilation included), measured
           2026-11-30 with jax 0.10.2 on the 2-core machine shared with six other sessions
           (an earlier run under heavier load took 9 min).
Result (seed 0, char_gpt model trained 200 steps: held-out loss 2.266 nats/char, perplexity
9.64; 4 samples of 56 characters after "ROMEO:\n", kept inside the trained context of 64):
           strategy          self-perplexity  distinct-2   first sample starts
           greedy                  2.65          0.036     "That the the the the the ..."
           temperature 0.7         6.58          0.550     "But museay sour eat marce whe"
           temperature 1.0        10.28          0.723     "But museay so aue whar ca-whh"
           top-k 10                7.17          0.555     "But museay so ane whar theethe"
           top-p 0.9               7.24          0.586     "But mald, I lowne whar cate he"
           beam 4, alpha 0.6       2.63          0.127     "And the the the the the ..."
           Greedy and beam search find the most likely text under this weak model, which is
           a loop ("the the"); temperature 1 matches the model's own perplexity (10.3 vs
           9.6 on held-out text); top-k and top-p cut the unlikely tail (perplexity 7.2)
           while keeping most of the diversity of temperature 0.7.
"""

import ml_collections

from experiments.configs.char_gpt import get_config as char_gpt_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "decoding_strategies"
    config.seed = 0
    config.prompt = "ROMEO:\n"
    config.num_samples = 4
    config.sample_length = 56  # prompt + sample within the trained context of 64
    config.beam_width = 4
    config.length_alpha = 0.6
    train = char_gpt_config()
    train.num_steps = 200
    train.eval_every = train.checkpoint_every = 200
    train.mesh.data = 1
    config.train = train
    return config
