"""Metrics against scikit-learn, ECE against a hand computation."""

import numpy as np
import pytest
from sklearn import metrics as sk

from jaxdl import eval as E


@pytest.fixture(scope="module")
def predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=300)
    logits = rng.normal(size=(300, 5)) + 2.0 * np.eye(5)[labels] * rng.uniform(size=(300, 1))
    return logits, labels


def test_accuracy_and_top_k_match_sklearn(predictions):
    logits, labels = predictions
    assert E.accuracy(logits, labels) == pytest.approx(sk.accuracy_score(labels,
                                                                         logits.argmax(1)))
    for k in (1, 2, 3):
        assert E.top_k_accuracy(logits, labels, k) == pytest.approx(
            sk.top_k_accuracy_score(labels, logits, k=k))


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_precision_recall_f1_match_sklearn(predictions, average):
    logits, labels = predictions
    predicted = logits.argmax(1)
    predicted[predicted == 4] = 3  # class 4 never predicted: the zero-division convention
    ours = E.precision_recall_f1(labels, predicted, 5, average)
    theirs = sk.precision_recall_fscore_support(labels, predicted, average=average,
                                                zero_division=0)
    np.testing.assert_allclose([ours["precision"], ours["recall"], ours["f1"]], theirs[:3],
                               rtol=1e-12)


def test_per_class_scores_and_confusion_matrix_match_sklearn(predictions):
    logits, labels = predictions
    predicted = logits.argmax(1)
    np.testing.assert_array_equal(E.confusion_matrix(labels, predicted, 5),
                                  sk.confusion_matrix(labels, predicted, labels=range(5)))
    ours = E.precision_recall_f1(labels, predicted, 5, "none")
    p, r, f, s = sk.precision_recall_fscore_support(labels, predicted, labels=range(5),
                                                    zero_division=0)
    for a, b in zip((ours["precision"], ours["recall"], ours["f1"], ours["support"]),
                    (p, r, f, s)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_nll_and_perplexity_match_log_loss(predictions):
    logits, labels = predictions
    probs = E.softmax(logits)
    assert E.negative_log_likelihood(logits, labels) == pytest.approx(
        sk.log_loss(labels, probs, labels=range(5)), rel=1e-9)
    assert E.perplexity(logits, labels) == pytest.approx(
        np.exp(sk.log_loss(labels, probs, labels=range(5))), rel=1e-9)
    # Uniform predictions over V symbols: perplexity V exactly.
    assert E.perplexity(np.zeros((7, 11)), np.arange(7)) == pytest.approx(11.0)


def test_ece_by_hand():
    # Two bins, (0, 0.5] and (0.5, 1]; four classes so that confidences below 0.5 occur.
    probs = np.array([[0.9, 0.1, 0.0, 0.0],    # conf 0.9, correct
                      [0.8, 0.2, 0.0, 0.0],    # conf 0.8, wrong (label 1)
                      [0.4, 0.3, 0.2, 0.1],    # conf 0.4, correct
                      [0.3, 0.3, 0.2, 0.2]])   # conf 0.3, wrong (label 2)
    labels = np.array([0, 1, 0, 2])
    # bin (0, 0.5]: conf mean 0.35, acc 0.5 -> |0.15| * 2/4; bin (0.5, 1]: 0.85 vs 0.5 -> 0.35
    expected = 0.5 * 0.15 + 0.5 * 0.35
    assert E.expected_calibration_error(probs, labels, num_bins=2) == pytest.approx(expected)
    bins = E.reliability_bins(probs, labels, num_bins=2)
    np.testing.assert_allclose(bins.count, [2, 2])
    np.testing.assert_allclose(bins.confidence, [0.35, 0.85])


def test_ece_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.3, 1.0, size=20000)
    correct = rng.uniform(size=conf.size) < conf  # calibrated by construction
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.where(correct, 0, 1)
    assert E.expected_calibration_error(probs, labels) < 0.02
    sharp = np.stack([np.minimum(conf + 0.2, 1.0), 1 - np.minimum(conf + 0.2, 1.0)], 1)
    assert E.expected_calibration_error(sharp, labels) > 0.1


def test_classification_report_and_errors(predictions, tmp_path):
    logits, labels = predictions
    report = E.classification_report(logits, labels)
    assert report["f1_micro"] == pytest.approx(report["accuracy"])
    worst = E.worst_examples(logits, labels, k=5)
    losses = E.per_example_loss(logits, labels)
    assert np.all(np.diff(worst.loss) <= 0) and worst.loss[0] == pytest.approx(losses.max())
    np.testing.assert_allclose(np.sort(losses)[::-1][:5], worst.loss)
    per_class = E.per_class_breakdown(logits, labels)
    recalls = E.precision_recall_f1(labels, logits.argmax(1), 5, "none")["recall"]
    np.testing.assert_allclose([per_class[c]["accuracy"] for c in range(5)], recalls)
    slices = np.where(np.arange(300) < 100, "a", "b")
    by_slice = E.per_slice_breakdown(logits, labels, slices)
    assert by_slice["a"]["count"] == 100
    assert by_slice["a"]["accuracy"] == pytest.approx(E.accuracy(logits[:100], labels[:100]))
    matrix = E.confusion_matrix(labels, logits.argmax(1), 5)
    pairs = E.most_confused_pairs(matrix, k=3)
    off = matrix - np.diag(np.diag(matrix))
    assert pairs[0][2] == off.max() and matrix[pairs[0][0], pairs[0][1]] == off.max()
    E.plot_confusion_matrix(matrix, tmp_path / "cm.png")
    E.plot_reliability_diagram(E.reliability_bins(E.softmax(logits), labels), tmp_path / "r.png")
    E.plot_worst_examples(np.random.default_rng(0).uniform(size=(300, 8, 8)), worst,
                          tmp_path / "w.png")
    assert all((tmp_path / f).stat().st_size > 5000 for f in ("cm.png", "r.png", "w.png"))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="labels"):
        E.accuracy(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="k=3"):
        E.top_k_accuracy(np.zeros((3, 2)), np.array([0, 1, 1]), 3)
    with pytest.raises(ValueError, match="average='mean'"):
        E.precision_recall_f1(np.zeros(3, int), np.zeros(3, int), 2, "mean")


def test_temperature_scaling_lowers_ece_of_an_overconfident_model(tmp_path):
    from jaxdl.eval.calibration import calibration_curves, fit_temperature

    # Logits of a calibrated model (true T = 1), then sharpened x3: over-confident.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=4000)
    calibrated = rng.normal(size=(4000, 10))
    probs = E.softmax(calibrated)
    labels = np.array([rng.choice(10, p=p) for p in probs])  # labels drawn from the model
    overconfident = 3.0 * calibrated
    fit = fit_temperature(overconfident, labels)
    assert fit.temperature == pytest.approx(3.0, rel=0.1)
    assert fit.nll_after < fit.nll_before and fit.ece_after < 0.5 * fit.ece_before
    assert fit.ece_after < 0.03
    # Scaling never changes a prediction.
    np.testing.assert_array_equal((overconfident / fit.temperature).argmax(1),
                                  overconfident.argmax(1))
    # The NLL at the fitted T is a minimum along T.
    for factor in (0.9, 1.1):
        assert E.negative_log_likelihood(overconfident / (fit.temperature * factor),
                                         labels) > fit.nll_after
    curves = calibration_curves(overconfident, labels, fit.temperature)
    E.plot_reliability_diagram(curves, tmp_path / "calibration.png")
    assert (tmp_path / "calibration.png").exists()
