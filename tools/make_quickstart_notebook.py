"""Write notebooks/00_quickstart.ipynb (run from the repository root; outputs are not stored)."""

from nbformat.v4 import new_code_cell, new_markdown_cell
from notebook_builder import install_cell, write_notebook

cells = [
    new_markdown_cell(
        "# jaxdl quickstart\n\n"
        "Train a small CNN on scikit-learn's embedded handwritten digits with jaxdl's one "
        "training loop, look at the curves, then use the trained model through the pure-"
        "function boundary (`graphdef, params, state`). Runs on CPU, GPU or TPU (Colab).\n\n"
        "Set `JAXDL_SOURCE` to a pip requirement for jaxdl (a git URL or a local path) if it "
        "is not installed yet."
    ),
    install_cell(),
    new_markdown_cell(
        "## Settings\n"
        "The test suite runs this notebook with `JAXDL_NOTEBOOK_STEPS` set to a few steps."
    ),
    new_code_cell(
        "import pathlib, tempfile\n"
        "NUM_STEPS = int(os.environ.get('JAXDL_NOTEBOOK_STEPS', 600))\n"
        "WORKDIR = pathlib.Path(os.environ.get('JAXDL_NOTEBOOK_WORKDIR') or "
        "tempfile.mkdtemp(prefix='jaxdl-quickstart-'))\n"
        "print(NUM_STEPS, WORKDIR)"
    ),
    new_markdown_cell(
        "## A config\n"
        "Every experiment is an `ml_collections.ConfigDict`. `base_config()` is the "
        "quickstart; overrides are checked key by key (try a misspelt key)."
    ),
    new_code_cell(
        "from jaxdl.config import ConfigError, apply_overrides, base_config\n"
        "config = base_config()\n"
        "apply_overrides(config, {'num_steps': str(NUM_STEPS), 'eval_every': "
        "str(max(NUM_STEPS // 3, 1)), 'optimizer.warmup_steps': str(min(30, NUM_STEPS // 4))})\n"
        "try:\n"
        "    apply_overrides(base_config(), {'optimizer.learnin_rate': '1e-3'})\n"
        "except ConfigError as error:\n"
        "    print('refused:', error)\n"
        "print(config)"
    ),
    new_markdown_cell("## Train\nA progress bar, periodic evaluation, checkpoints and logs."),
    new_code_cell(
        "from jaxdl.train import train_and_evaluate\n"
        "result = train_and_evaluate(config, WORKDIR)\n"
        "print(f\"held-out accuracy: {100 * result.eval_metrics['accuracy']:.2f}%\")\n"
        "sorted(p.name for p in WORKDIR.iterdir())"
    ),
    new_markdown_cell("## Curves\nThe loop wrote `curves.png` from `metrics.jsonl`."),
    new_code_cell(
        "from IPython.display import Image, display\n"
        "display(Image(filename=str(WORKDIR / 'curves.png')))"
    ),
    new_markdown_cell(
        "## The pure boundary\n"
        "The model lives as `(graphdef, params, state)`; `functional.apply` is a pure "
        "function you can `jax.jit`, `jax.grad` or `jax.vmap`."
    ),
    new_code_cell(
        "import jax, numpy as np\n"
        "import matplotlib.pyplot as plt\n"
        "from jaxdl import functional\n"
        "experiment, state = result.experiment, result.state\n"
        "images, labels = experiment.dataset.eval['x'][:8], experiment.dataset.eval['y'][:8]\n"
        "predict = jax.jit(lambda p, s, x: functional.apply(experiment.graphdef, p, s, x)[0])\n"
        "predicted = np.asarray(predict(state.params, state.model_state, images)).argmax(-1)\n"
        "fig, axes = plt.subplots(1, 8, figsize=(10, 1.6))\n"
        "for ax, image, label, guess in zip(axes, images, labels, predicted):\n"
        "    ax.imshow(image[..., 0], cmap='gray_r'); ax.axis('off')\n"
        "    ax.set_title(f'{guess} ({label})', color='green' if guess == label else 'red')\n"
        "plt.show()\n"
        "print('agreement with labels:', (predicted == labels).mean())"
    ),
    new_markdown_cell(
        "## Resume\nRunning the same config in the same workdir continues from the last "
        "checkpoint (here: it is already finished, so it only evaluates)."
    ),
    new_code_cell(
        "again = train_and_evaluate(config, WORKDIR)\n"
        "print('resumed from step', again.resumed_from)\n"
        "assert again.eval_metrics == result.eval_metrics"
    ),
]

write_notebook(cells, "notebooks/00_quickstart.ipynb",
               expect=("held-out accuracy:", "refused:"))
