"""Evaluation (book chapter 100): metrics beyond accuracy, calibration, error analysis and
validation protocols, temperature scaling. Host-side numpy functions of what a held-out pass
returns (``jaxdl.eval.predict.predict`` produces the logits)."""

from jaxdl.eval.calibration import TemperatureFit, calibration_curves, fit_temperature
from jaxdl.eval.errors import (
    most_confused_pairs,
    per_class_breakdown,
    per_example_loss,
    per_slice_breakdown,
    plot_confusion_matrix,
    plot_reliability_diagram,
    plot_worst_examples,
    worst_examples,
)
from jaxdl.eval.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    negative_log_likelihood,
    perplexity,
    precision_recall_f1,
    reliability_bins,
    softmax,
    top_k_accuracy,
)
from jaxdl.eval.validation import (
    kfold,
    nested_cross_validation,
    stratified_kfold,
    stratified_split,
    time_ordered_split,
)

__all__ = [
    "TemperatureFit", "calibration_curves", "fit_temperature",
    "accuracy", "classification_report", "confusion_matrix", "expected_calibration_error",
    "kfold", "most_confused_pairs", "negative_log_likelihood", "nested_cross_validation",
    "per_class_breakdown", "per_example_loss", "per_slice_breakdown", "perplexity",
    "plot_confusion_matrix", "plot_reliability_diagram", "plot_worst_examples",
    "precision_recall_f1", "reliability_bins", "softmax", "stratified_kfold",
    "stratified_split", "time_ordered_split", "top_k_accuracy", "worst_examples",
]
