"""Held-out evaluation report of the MNIST MLP (8k train / 2k held out).

Command:   JAXDL_DATA_DIR=../shared/data python -m experiments.analyze \
               --config evaluation_report_mnist
Output:    runs/evaluation_report_mnist/{confusion_matrix.png, reliability.png,
           worst_examples.png, results.json, train/}
Runtime:   95 s wall on 2 CPU cores heavily shared with other jobs (load ~10; 2026-11-30,
           jax 0.10.2, compilation cache off), training included.
Result (seed 0, 2,000 held-out images): accuracy 96.55% (as mnist_mlp), top-5 99.95%,
           macro F1 0.9653, NLL 0.148 nats (perplexity 1.159), ECE 0.017 (15 bins); most
           confused 3->2 (5), 9->4 (5), 9->1 (4); accuracy by ink quartile 94.8% (thinnest)
           to 97.3% (boldest).
"""

import ml_collections

from experiments.configs.mnist_mlp import get_config as mnist_mlp


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "evaluation_report"
    config.seed = 0
    config.worst_k = 24
    config.num_bins = 15
    config.train = mnist_mlp()
    return config
