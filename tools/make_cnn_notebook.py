"""Write notebooks/03_cnn_regularization.ipynb (run from the repository root)."""

from notebook_builder import code, install_cell, md, write_notebook

cells = [
    md("# CNN families, normalization and regularization\n\n"
       "A tour of issue 5: the convolutional families and their published sizes, "
       "BatchNorm's two modes, receptive fields, a small ResNet trained with augmentation "
       "and mixup through the one training loop, adversarial examples, and what the network "
       "looks at (filters, saliency, Grad-CAM)."),
    install_cell(),
    code("import pathlib, tempfile\n"
         "NUM_STEPS = int(os.environ.get('JAXDL_NOTEBOOK_STEPS', 400))\n"
         "WORKDIR = pathlib.Path(os.environ.get('JAXDL_NOTEBOOK_WORKDIR') or "
         "tempfile.mkdtemp(prefix='jaxdl-cnn-'))\n"
         "print(NUM_STEPS, WORKDIR)"),
    md("## Families and their sizes\n"
       "Parameter counts at 224x224 with 1000 classes, computed on abstract shapes "
       "(`nnx.eval_shape`: nothing is allocated), against the papers' published figures."),
    code("import jax\n"
         "from flax import nnx\n"
         "from jaxdl.models import MODELS\n"
         "def count(section, shape=(224, 224, 3), classes=1000):\n"
         "    model = nnx.eval_shape(lambda: MODELS.build(section, field='model', "
         "input_shape=shape, num_classes=classes, rngs=nnx.Rngs(0)))\n"
         "    _, params, _ = nnx.split(model, nnx.Param, ...)\n"
         "    return sum(x.size for x in jax.tree.leaves(params))\n"
         "for name, section, published in [\n"
         "    ('ResNet-18', {'name': 'resnet', 'depth': 18, 'stem': 'imagenet'}, '11.69M'),\n"
         "    ('ResNet-50', {'name': 'resnet', 'depth': 50, 'stem': 'imagenet'}, '25.56M'),\n"
         "    ('MobileNetV2', {'name': 'mobilenet_v2', 'small_input': False}, '3.50M'),\n"
         "    ('EfficientNet-B0', {'name': 'efficientnet', 'small_input': False}, '5.29M'),\n"
         "    ('DenseNet-121', {'name': 'densenet', 'small_input': False}, '7.98M')]:\n"
         "    print(f'{name:<16} {count(section):>12,d} parameters (published {published})')"),
    md("## BatchNorm: batch statistics in training, running averages in evaluation"),
    code("import jax.numpy as jnp, numpy as np\n"
         "from jaxdl import functional\n"
         "from jaxdl.models.norms import BatchNorm\n"
         "graphdef, params, state = functional.split_model(BatchNorm(2, momentum=0.5))\n"
         "x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (256, 2))\n"
         "y, state = functional.apply(graphdef, params, state, x, train=True)\n"
         "print('train output mean/std:', np.round(y.mean(0), 3), np.round(y.std(0), 3))\n"
         "print('running mean after one step:', np.round(state['mean'], 3))\n"
         "y_eval, _ = functional.apply(graphdef, params, state, x, train=False)\n"
         "print('eval output mean (running stats not yet converged):', "
         "np.round(y_eval.mean(0), 3))"),
    md("## Receptive fields\n"
       "`receptive_field` takes (kernel, stride[, dilation]) per layer; dilations 1, 2, 4 "
       "grow it exponentially."),
    code("from jaxdl.models.conv import receptive_field\n"
         "print('3 plain 3x3 convs:', receptive_field([(3, 1)] * 3))\n"
         "print('dilations 1, 2, 4:', receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 4)]))\n"
         "print('ResNet stem 7x7/2 + pool 3x3/2:', receptive_field([(7, 2), (3, 2)]))"),
    md("## Train a small ResNet with augmentation and mixup\n"
       "Regularizers are options of the `classification` objective; the one training loop "
       "runs them inside the compiled step with the step's PRNG key."),
    code("from jaxdl.config import base_config\n"
         "from jaxdl.train import train_and_evaluate\n"
         "config = base_config()\n"
         "config.model = {'name': 'resnet', 'stage_sizes': (1, 1), 'block': 'basic', "
         "'width': 16, 'stem': 'cifar'}\n"
         "config.loss = {'name': 'classification', 'label_smoothing': 0.0,\n"
         "               'augment': {'crop_padding': 1, 'rotate_degrees': 8.0},\n"
         "               'mixup_alpha': 0.2,\n"
         "               'robust_eval': {'fgsm': {'attack': 'fgsm', 'epsilon': 0.1}}}\n"
         "config.num_steps = NUM_STEPS\n"
         "config.eval_every = max(NUM_STEPS // 2, 1)\n"
         "config.checkpoint_every = NUM_STEPS\n"
         "config.optimizer.warmup_steps = min(30, NUM_STEPS // 4)\n"
         "result = train_and_evaluate(config, WORKDIR)\n"
         "metrics = result.eval_metrics\n"
         "print(f\"held-out accuracy: {100 * metrics['accuracy']:.2f}%, FGSM (eps 0.1) "
         "accuracy: {100 * metrics['robust_accuracy_fgsm']:.2f}%\")"),
    md("## Adversarial examples\n"
       "PGD moves each image inside an L-infinity ball of radius epsilon to raise the loss."),
    code("import optax\n"
         "from jaxdl.regularize import pgd\n"
         "experiment, state = result.experiment, result.state\n"
         "images = jnp.asarray(experiment.dataset.eval['x'][:64])\n"
         "labels = jnp.asarray(experiment.dataset.eval['y'][:64])\n"
         "def losses(z):\n"
         "    logits, _ = functional.apply(experiment.graphdef, state.params, "
         "state.model_state, z)\n"
         "    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)\n"
         "attacked = pgd(losses, images, 0.1, steps=10)\n"
         "print('max |perturbation|:', float(jnp.abs(attacked - images).max()))\n"
         "print('loss clean / attacked:', float(losses(images).mean()), "
         "float(losses(attacked).mean()))"),
    md("## What the network looks at\n"
       "First-layer filters, saliency maps and Grad-CAM (on the last feature map), saved as "
       "PNGs and shown here."),
    code("from IPython.display import Image, display\n"
         "from jaxdl import interpret\n"
         "kernel = state.params['stem']['conv']['kernel']\n"
         "interpret.save_filters(kernel, WORKDIR / 'filters.png', 'first-layer filters')\n"
         "sal = interpret.model_saliency(experiment.graphdef, state.params, "
         "state.model_state, images[:6], labels[:6])\n"
         "cam = interpret.model_grad_cam(experiment.graphdef, state.params, "
         "state.model_state, images[:6], labels[:6])\n"
         "interpret.save_heatmaps(images[:6], {'saliency': sal, 'Grad-CAM': cam}, "
         "WORKDIR / 'maps.png', [f'label {int(l)}' for l in labels[:6]])\n"
         "display(Image(filename=str(WORKDIR / 'filters.png')))\n"
         "display(Image(filename=str(WORKDIR / 'maps.png')))\n"
         "print('saved', sorted(p.name for p in WORKDIR.glob('*.png')))"),
]

write_notebook(cells, "notebooks/03_cnn_regularization.ipynb",
               expect=("ResNet-50          25,557,032 parameters", "held-out accuracy:",
                       "FGSM (eps 0.1) accuracy:", "max |perturbation|:", "filters.png"))
