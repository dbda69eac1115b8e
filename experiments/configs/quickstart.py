"""Quickstart: a small CNN on scikit-learn's embedded 8x8 digits (no download).

Command:   python -m experiments.train      (same as --config experiments/configs/quickstart.py)
Data:      1,437 train / 360 held-out digits (stratified, fixed split).
Model:     conv 32 -> pool -> conv 64 -> pool -> dense 128 -> 10; AdamW 3e-3, warmup+cosine.
Runtime:   MEASURED_RUNTIME
Result:    MEASURED_RESULT
"""

from jaxdl.config import base_config


def get_config():
    return base_config()
