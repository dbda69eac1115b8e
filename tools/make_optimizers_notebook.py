"""Write notebooks/02_optimizers.ipynb (run from the repository root; outputs not stored)."""

from notebook_builder import code, install_cell, md, write_notebook

cells = [
    md("# Optimizers: schedules, the learning-rate range test, K-FAC vs Adam\n\n"
       "Every optimizer in jaxdl is an optax `GradientTransformation` chosen by name in the "
       "config (`config.optimizer.name`), trained by the one loop `train_and_evaluate`. "
       "Runs on CPU, GPU or TPU (Colab)."),
    install_cell(),
    code("import os, pathlib, tempfile\n"
         "NUM_STEPS = int(os.environ.get('JAXDL_NOTEBOOK_STEPS', 300))\n"
         "WORKDIR = pathlib.Path(os.environ.get('JAXDL_NOTEBOOK_WORKDIR') or "
         "tempfile.mkdtemp(prefix='jaxdl-optimizers-'))\n"
         "print(NUM_STEPS, WORKDIR)"),
    md("## Schedules\nEach schedule is a function `step -> rate` (optax). Warm-up can be "
       "prepended to any of them with `warmup_steps`."),
    code("import matplotlib.pyplot as plt, numpy as np\n"
         "from IPython.display import display\n"
         "from jaxdl.optim import SCHEDULES, make_schedule\n"
         "steps = np.arange(300)\n"
         "fig, ax = plt.subplots(figsize=(8, 4))\n"
         "for name in SCHEDULES:\n"
         "    if name == 'range_test':\n"
         "        continue\n"
         "    schedule = make_schedule(name, 1.0, 300, warmup_steps=20 if name == "
         "'warmup_cosine' else 0,\n"
         "                             final_fraction=0.05, decay_steps=60, decay_rate=0.5, "
         "cycle_steps=50)\n"
         "    ax.plot(steps, [float(schedule(t)) for t in steps], label=name)\n"
         "ax.set(xlabel='step', ylabel='rate / peak'); ax.legend(ncol=3, fontsize=8)\n"
         "display(fig); plt.close(fig)"),
    md("## Learning-rate range test (Smith, 2017)\nA short run whose rate grows "
       "exponentially (`schedule='range_test'`), then the loss-versus-rate curve and a "
       "suggested rate."),
    code("from IPython.display import Image, display\n"
         "from jaxdl.config import base_config\n"
         "from jaxdl.optim.lr_range import lr_range_report\n"
         "from jaxdl.train import train_and_evaluate\n"
         "config = base_config()\n"
         "config.model = {'name': 'mlp', 'hidden': (64,)}\n"
         "config.optimizer = {'name': 'sgd', 'learning_rate': 10.0, 'schedule': 'range_test',\n"
         "                    'final_fraction': 1e-4, 'momentum': 0.9}\n"
         "config.num_steps, config.log_every, config.eval_every = max(NUM_STEPS, 30), 1, 0\n"
         "config.checkpoint_every, config.progress_bar = 0, False\n"
         "train_and_evaluate(config, WORKDIR / 'range_test')\n"
         "report = lr_range_report(WORKDIR / 'range_test')\n"
         "print(f\"suggested rate: {report['suggested']:.3g} (steepest {report['steepest']:.3g}, "
         "minimum at {report['min_loss_rate']:.3g})\")\n"
         "display(Image(filename=report['figure']))"),
    md("## K-FAC vs Adam on a small autoencoder\nThe digits autoencoder 64-32-16-4-16-32-64 "
       "(tanh), sigmoid cross-entropy summed over pixels. K-FAC (Martens & Grosse, 2015) with "
       "its adaptive step size, momentum and Levenberg-Marquardt damping; its statistics come "
       "from hooks in the model's `CurvatureLinear` layers, gathered by the same train step."),
    code("from jaxdl.monitor.writers import read_metrics\n"
         "optimizers = {\n"
         "    'K-FAC': {'name': 'kfac', 'learning_rate': 1.0, 'adaptive': True, "
         "'adapt_damping': True,\n"
         "              'damping': 1.0, 'damping_decay': 0.95 ** 5, 'inverse_every': 10, "
         "'l2_damping': 1e-5},\n"
         "    'Adam': {'name': 'adam', 'learning_rate': 3e-3},\n"
         "}\n"
         "curves = {}\n"
         "for label, optimizer in optimizers.items():\n"
         "    config = base_config()\n"
         "    config.model = {'name': 'autoencoder', 'encoder': (32, 16, 4)}\n"
         "    config.loss = {'name': 'sigmoid_reconstruction', 'l2': 1e-5}\n"
         "    config.optimizer = {'schedule': 'constant', **optimizer}\n"
         "    config.batch_size, config.num_steps, config.log_every = 128, NUM_STEPS, 5\n"
         "    config.eval_every, config.checkpoint_every, config.progress_bar = 0, 0, False\n"
         "    result = train_and_evaluate(config, WORKDIR / label)\n"
         "    curves[label] = [(r['step'], r['loss']) for r in read_metrics(WORKDIR / label, "
         "'train')]\n"
         "    print(f\"{label} final objective: {result.eval_metrics['loss']:.2f} (held out)\")\n"
         "fig, ax = plt.subplots(figsize=(6, 4))\n"
         "for label, points in curves.items():\n"
         "    ax.plot(*zip(*points), label=label)\n"
         "ax.set(xlabel='step', ylabel='training objective', yscale='log'); ax.legend()\n"
         "display(fig); plt.close(fig)"),
]

write_notebook(cells, "notebooks/02_optimizers.ipynb",
               expect=("suggested rate:", "K-FAC final objective:"))
