"""Classification and language-model metrics beyond accuracy.

Host-side numpy functions of model outputs (``logits`` or ``probs: [n, num_classes]``) and
integer ``labels: [n]``; they run on the arrays a held-out pass returns and never compile.

* accuracy and top-k accuracy;
* the confusion matrix ``C[i, j]`` = examples of true class ``i`` predicted as ``j``;
* precision, recall and F1 per class and their macro (unweighted mean over classes), micro
  (from pooled counts; equal to accuracy for single-label problems) and weighted averages
  (van Rijsbergen, 1979);
* negative log-likelihood and perplexity ``exp(NLL)`` (nats);
* expected calibration error with equal-width confidence bins and the data of a reliability
  diagram (Naeini, Cooper & Hauskrecht, 2015; Guo, Pleiss, Sun & Weinberger, 2017).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

AVERAGES = ("macro", "micro", "weighted", "none")


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected [n, num_classes], got shape {scores.shape}.")
    if labels.shape != scores.shape[:1]:
        raise ValueError(f"labels: expected shape ({scores.shape[0]},) to match scores, got "
                         f"{labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels: expected integers in [0, {scores.shape[1]}), got range "
                         f"[{labels.min()}, {labels.max()}].")
    return scores, labels


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable ``log softmax`` over the last axis, in float64."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """``softmax`` over the last axis, in float64."""
    return np.exp(log_softmax(logits))


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of examples whose highest score is the label (ties: the lowest index)."""
    scores, labels = _check(scores, labels)
    return float(np.mean(scores.argmax(-1) == labels))


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of examples whose label is among the ``k`` highest scores."""
    scores, labels = _check(scores, labels)
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k={k}: expected 1 <= k <= num_classes={scores.shape[1]}.")
    label_scores = np.take_along_axis(scores, labels[:, None], axis=1)
    # Rank = number of classes scored strictly higher (ties count in the label's favour).
    return float(np.mean((scores > label_scores).sum(axis=1) < k))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts; rows are true classes, columns predicted."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ.")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name}: expected integers in [0, {num_classes}).")
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def precision_recall_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
                        average: str = "macro") -> dict[str, np.ndarray | float]:
    """Precision, recall and F1 from the confusion matrix.

    ``average``: ``"none"`` (per-class arrays ``[num_classes]``), ``"macro"``, ``"micro"`` or
    ``"weighted"`` (by support). A class never predicted has precision 0, one absent from
    the labels recall 0 (the convention of scikit-learn's ``zero_division=0``).
    Returns ``{"precision", "recall", "f1", "support"}``.
    """
    if average not in AVERAGES:
        raise ValueError(f"average={average!r}: expected one of {AVERAGES}.")
    matrix = confusion_matrix(labels, predictions, num_classes).astype(np.float64)
    true_pos = np.diag(matrix)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    if average == "micro":
        tp, fp, fn = true_pos.sum(), (predicted - true_pos).sum(), (support - true_pos).sum()
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                "support": float(support.sum())}
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    if average == "none":
        return {"precision": precision, "recall": recall, "f1": f1, "support": support}
    weights = support / support.sum() if average == "weighted" else np.full(num_classes,
                                                                           1 / num_classes)
    return {"precision": float(weights @ precision), "recall": float(weights @ recall),
            "f1": float(weights @ f1), "support": float(support.sum())}


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log softmax(logits)[label]`` in nats; logits ``[n, C]`` (or ``[..., C]`` with
    labels ``[...]``, e.g. per token)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_logits, flat_labels = _check(flat_logits, labels.reshape(-1))
    log_probs = log_softmax(flat_logits)
    return float(-np.mean(log_probs[np.arange(flat_labels.size), flat_labels]))


def perplexity(logits: np.ndarray, labels: np.ndarray) -> float:
    """``exp(NLL)``: the effective number of equally likely choices per prediction."""
    return float(np.exp(negative_log_likelihood(logits, labels)))


class ReliabilityBins(NamedTuple):
    """Per-bin statistics of a reliability diagram, each ``[num_bins]``."""

    edges: np.ndarray  # [num_bins + 1] confidence bin edges on [0, 1]
    confidence: np.ndarray  # mean top-class probability in the bin (0 where empty)
    accuracy: np.ndarray  # fraction correct in the bin (0 where empty)
    count: np.ndarray  # examples in the bin


def reliability_bins(probs: np.ndarray, labels: np.ndarray,
                     num_bins: int = 15) -> ReliabilityBins:
    """Bin examples by confidence ``max_c p_c`` into ``num_bins`` equal-width bins
    ``(b/n, (b+1)/n]`` (the first bin also holds confidence 0)."""
    probs, labels = _check(probs, labels)
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins={num_bins!r}: expected an integer >= 1.")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins).astype(np.float64)
    safe = np.maximum(count, 1)
    return ReliabilityBins(
        edges=edges,
        confidence=np.bincount(index, confidence, minlength=num_bins) / safe,
        accuracy=np.bincount(index, correct, minlength=num_bins) / safe,
        count=count,
    )


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               num_bins: int = 15) -> float:
    """``ECE = sum_b (n_b / n) |acc_b - conf_b|`` over equal-width confidence bins."""
    bins = reliability_bins(probs, labels, num_bins)
    weights = bins.count / max(bins.count.sum(), 1)
    return float(np.sum(weights * np.abs(bins.accuracy - bins.confidence)))


def classification_report(logits: np.ndarray, labels: np.ndarray, *,
                          top_k: int = 5, num_bins: int = 15) -> dict[str, float]:
    """Every scalar metric above for one set of logits ``[n, C]`` and labels ``[n]``."""
    logits, labels = _check(logits, labels)
    num_classes = logits.shape[1]
    predictions = logits.argmax(axis=1)
    probs = softmax(logits)
    report = {"accuracy": accuracy(logits, labels),
              f"top_{min(top_k, num_classes)}_accuracy":
                  top_k_accuracy(logits, labels, min(top_k, num_classes)),
              "nll": negative_log_likelihood(logits, labels),
              "ece": expected_calibration_error(probs, labels, num_bins)}
    for average in ("macro", "micro", "weighted"):
        scores = precision_recall_f1(labels, predictions, num_classes, average)
        report.update({f"{name}_{average}": scores[name]
                       for name in ("precision", "recall", "f1")})
    report["perplexity"] = float(np.exp(report["nll"]))
    return report
