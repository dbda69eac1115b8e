"""Write notebooks/04_sequence_models.ipynb (run from the repository root; no outputs stored)."""

from notebook_builder import code, install_cell, md, write_notebook

cells = [
    md("# Sequence models: recurrent cells, attention, state spaces\n\n"
       "A tour of `jaxdl.models.rnn`, `seq2seq` and `ssm`: LSTM/GRU cells run with `lax.scan`, "
       "masking, an attention encoder-decoder trained with the one training loop, greedy and "
       "beam-search decoding, and a selective state-space model whose parallel (associative "
       "scan) and recurrent modes agree. The test suite runs it with `JAXDL_NOTEBOOK_STEPS` "
       "set to a few steps; the defaults reproduce `experiments/configs/seq2seq_reverse.py`."),
    install_cell(),
    code("import pathlib, tempfile\n"
         "import jax, jax.numpy as jnp, numpy as np\n"
         "from flax import nnx\n"
         "NUM_STEPS = int(os.environ.get('JAXDL_NOTEBOOK_STEPS', 600))\n"
         "WORKDIR = pathlib.Path(os.environ.get('JAXDL_NOTEBOOK_WORKDIR') or "
         "tempfile.mkdtemp(prefix='jaxdl-seq-'))\n"
         "print(NUM_STEPS, WORKDIR)"),
    md("## Cells and masking\n"
       "A bidirectional LSTM over a right-padded batch: padded steps output zeros and the "
       "backward half starts at each sequence's own last token."),
    code("from jaxdl.models.rnn import RecurrentLayer\n"
         "layer = RecurrentLayer('lstm', 4, 8, rngs=nnx.Rngs(0), bidirectional=True)\n"
         "x = jax.random.normal(jax.random.key(0), (2, 6, 4))\n"
         "mask = jnp.arange(6)[None] < jnp.array([[6], [3]])\n"
         "out, _ = layer(x, mask=mask)\n"
         "print('output', out.shape, '| padded outputs all zero:', bool((out[1, 3:] == 0).all()))"),
    md("## Reverse a digit sequence with attention\n"
       "Data set `sequence_task`, model `rnn_seq2seq` (Bahdanau attention), objective "
       "`seq2seq` (teacher forcing; `sequence_accuracy` decodes greedily)."),
    code("from experiments.configs import seq2seq_reverse\n"
         "from jaxdl.config import apply_overrides\n"
         "from jaxdl.train import train_and_evaluate\n"
         "config = seq2seq_reverse.get_config().train\n"
         "apply_overrides(config, {'num_steps': str(NUM_STEPS), 'eval_every': '0',\n"
         "                         'optimizer.warmup_steps': str(min(50, NUM_STEPS // 4)),\n"
         "                         'progress_bar': 'false', 'data.num_eval': '500'})\n"
         "if NUM_STEPS < 100:  # the test suite's quick run: fewer held-out sequences\n"
         "    config.data.num_eval = 100\n"
         "result = train_and_evaluate(config, WORKDIR / 'seq2seq')\n"
         "print(f\"held-out sequence accuracy: {result.eval_metrics['sequence_accuracy']:.3f}, \"\n"
         "      f\"token accuracy: {result.eval_metrics['accuracy']:.3f}\")"),
    md("## Attention weights, greedy and beam search\n"
       "Rows are target steps, columns source positions: reversal shows as an anti-diagonal "
       "once trained. Beam search with width 1 is greedy decoding."),
    code("import matplotlib.pyplot as plt\n"
         "from IPython.display import Image, display\n"
         "from jaxdl import functional\n"
         "from jaxdl.models.seq2seq_decoding import beam_search, greedy_decode\n"
         "from jaxdl.train.sequence_objectives import decoder_input\n"
         "exp, state = result.experiment, result.state\n"
         "model = functional.merge_model(exp.graphdef, state.params, state.model_state)\n"
         "src = jnp.asarray(exp.dataset.eval['x'][:4])\n"
         "tgt = jnp.asarray(exp.dataset.eval['y'][:4])\n"
         "step_fn, carry = model.start_decoding(src)\n"
         "greedy = greedy_decode(step_fn, carry, 4, 8)\n"
         "beam1 = beam_search(step_fn, carry, 4, 8, beam_width=1)[0][:, 0]\n"
         "beam4 = beam_search(step_fn, carry, 4, 8, beam_width=4)[0][:, 0]\n"
         "print('beam width 1 equals greedy:', bool((beam1 == greedy).all()))\n"
         "print('source', src[0], '\\ngreedy', greedy[0], '\\nbeam 4', beam4[0])\n"
         "_, weights = model.teacher_forced(src, decoder_input(tgt))\n"
         "fig, ax = plt.subplots(figsize=(4, 3.6))\n"
         "ax.imshow(np.asarray(weights[0]), vmin=0, vmax=1)\n"
         "ax.set(xlabel='source position', ylabel='target step', title='Bahdanau attention')\n"
         "fig.savefig(WORKDIR / 'attention.png', dpi=80); plt.close(fig)\n"
         "display(Image(filename=str(WORKDIR / 'attention.png')))"),
    md("## A selective state-space model\n"
       "`ssm_lm` trains with `jax.lax.associative_scan`; `step_logits` runs the same weights "
       "one token at a time, as generation does."),
    code("from jaxdl.models import MODELS\n"
         "ssm = MODELS.build({'name': 'ssm_lm', 'kind': 'selective', 'd_model': 16, "
         "'num_layers': 2, 'state_dim': 4}, field='model', input_shape=(32,), "
         "num_classes=65, rngs=nnx.Rngs(0))\n"
         "tokens = jax.random.randint(jax.random.key(1), (2, 32), 0, 65)\n"
         "same = np.allclose(ssm(tokens), ssm.step_logits(tokens), rtol=1e-4, atol=1e-5)\n"
         "print('parallel == recurrent:', same)"),
    md("## A character-level SSM on Tiny Shakespeare\n"
       "The same budget as `experiments/configs/ssm_vs_lstm_selective.py`, shortened here."),
    code("from experiments.configs import ssm_vs_lstm_selective\n"
         "from jaxdl.data import decode, encode\n"
         "lm_config = ssm_vs_lstm_selective.get_config().train\n"
         "apply_overrides(lm_config, {'num_steps': str(NUM_STEPS), 'eval_every': '0',\n"
         "                            'optimizer.warmup_steps': str(min(50, NUM_STEPS // 4)),\n"
         "                            'progress_bar': 'false'})\n"
         "if NUM_STEPS < 100:  # the test suite's quick run: a smaller model\n"
         "    lm_config.model.d_model, lm_config.batch_size = 64, 16\n"
         "lm_config.data.eval_fraction = 0.02  # a smaller held-out split, for speed\n"
         "lm = train_and_evaluate(lm_config, WORKDIR / 'ssm_lm')\n"
         "print(f\"held-out loss: {lm.eval_metrics['loss']:.3f} nats/char\")\n"
         "vocab = lm.experiment.dataset.info['vocab']\n"
         "lm_model = functional.merge_model(lm.experiment.graphdef, lm.state.params, "
         "lm.state.model_state)\n"
         "prompt = jnp.asarray(encode('ROMEO:', vocab))[None]\n"
         "sample = lm_model.generate(prompt, 120, jax.random.key(0), temperature=0.8)\n"
         "print('sample:', 'ROMEO:' + decode(np.asarray(sample[0]), vocab))"),
]

write_notebook(cells, "notebooks/04_sequence_models.ipynb",
               expect=("held-out sequence accuracy:", "beam width 1 equals greedy: True",
                       "parallel == recurrent: True", "padded outputs all zero: True",
                       "sample: ROMEO:"))
