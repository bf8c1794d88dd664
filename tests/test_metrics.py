"""Confusion, per-class scores, calibration and confident mistakes: against answers worked out by hand."""

import json

import numpy as np
import pytest

from jaxmlp import metrics

# Three classes; class 2 has one sample and is never predicted.
#   sample:     0  1  2  3  4  5
#   label:      0  0  1  1  1  2
#   predicted:  0  1  1  1  0  1
# cells (true, predicted): (0,0) (0,1) (1,1) (1,1) (1,0) (2,1)
LABELS = np.array([0, 0, 1, 1, 1, 2])
PREDICTED = np.array([0, 1, 1, 1, 0, 1])
CONFUSION = np.array(
    [
        [1, 1, 0],  # class 0: one right, one taken for 1
        [1, 2, 0],  # class 1: two right, one taken for 0
        [0, 1, 0],  # class 2: its one sample taken for 1
    ]
)


def test_confusion_matrix_by_hand():
    confusion = metrics.confusion_matrix(LABELS, PREDICTED, num_classes=3)
    assert confusion.dtype == np.int64 and confusion.shape == (3, 3)
    np.testing.assert_array_equal(confusion, CONFUSION)


def test_confusion_matrix_rows_are_true_classes_and_columns_predicted():
    # One sample of class 0 predicted as 2 sits in row 0, column 2 (sklearn's convention).
    confusion = metrics.confusion_matrix(np.array([0]), np.array([2]), num_classes=3)
    assert confusion[0, 2] == 1 and confusion.sum() == 1


def test_confusion_matrix_agrees_with_a_plain_loop():
    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    expected = np.zeros((10, 10), np.int64)
    for true_class, predicted_class in zip(labels, predicted):
        expected[true_class, predicted_class] += 1
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, predicted), expected)


def test_confusion_matrix_of_no_samples_is_zeros():
    empty = np.array([], np.int64)
    np.testing.assert_array_equal(metrics.confusion_matrix(empty, empty, num_classes=2), np.zeros((2, 2)))


def test_row_normalised_by_hand():
    # Row sums 2, 3, 1.
    expected = [[1 / 2, 1 / 2, 0], [1 / 3, 2 / 3, 0], [0, 1, 0]]
    normalised = metrics.row_normalised(CONFUSION)
    assert normalised.dtype == np.float64
    np.testing.assert_allclose(normalised, expected, rtol=1e-15)


def test_row_normalised_leaves_a_class_without_samples_at_zero():
    # labels 0 1 1, predicted 0 1 2: class 2 is predicted once but has no samples, so row 2 is empty.
    confusion = metrics.confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 2]), num_classes=3)
    np.testing.assert_array_equal(confusion, [[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    normalised = metrics.row_normalised(confusion)
    np.testing.assert_array_equal(normalised, [[1, 0, 0], [0, 0.5, 0.5], [0, 0, 0]])
    assert not np.any(np.isnan(normalised))


def test_per_class_by_hand_with_a_class_never_predicted():
    # diagonal (right) 1 2 0; row sums (support) 2 3 1; column sums (predicted) 2 4 0.
    # precision = 1/2, 2/4, 0 (class 2 never predicted: 0/0 -> 0)
    # recall    = 1/2, 2/3, 0/1
    # f1        = 2(1/2)(1/2)/1 = 1/2, 2(1/2)(2/3)/(7/6) = 4/7, 0 (both 0)
    # accuracy  = 3/6
    scores = metrics.per_class(CONFUSION)
    np.testing.assert_allclose(scores["precision"], [1 / 2, 1 / 2, 0], rtol=1e-15)
    np.testing.assert_allclose(scores["recall"], [1 / 2, 2 / 3, 0], rtol=1e-15)
    np.testing.assert_allclose(scores["f1"], [1 / 2, 4 / 7, 0], rtol=1e-15)
    assert scores["support"] == [2, 3, 1]
    assert scores["accuracy"] == pytest.approx(1 / 2, rel=1e-15)
    assert json.loads(json.dumps(scores)) == scores


def test_per_class_with_a_class_without_samples():
    # confusion [[1,0,0],[0,1,1],[0,0,0]]: support 1 2 0, predicted 1 1 1, right 1 1 0.
    # precision 1, 1, 0/1 = 0; recall 1, 1/2, 0/0 -> 0; f1 1, 2(1)(1/2)/(3/2) = 2/3, 0; accuracy 2/3.
    scores = metrics.per_class([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(scores["precision"], [1, 1, 0], rtol=1e-15)
    np.testing.assert_allclose(scores["recall"], [1, 1 / 2, 0], rtol=1e-15)
    np.testing.assert_allclose(scores["f1"], [1, 2 / 3, 0], rtol=1e-15)
    assert scores["support"] == [1, 2, 0]
    assert scores["accuracy"] == pytest.approx(2 / 3, rel=1e-15)


def test_per_class_of_an_empty_matrix_is_all_zero():
    scores = metrics.per_class(np.zeros((2, 2), np.int64))
    zeros = [0.0, 0.0]
    assert scores == {"precision": zeros, "recall": zeros, "f1": zeros, "support": [0, 0], "accuracy": 0.0}


def test_sklearn_documentation_examples():
    # sklearn.metrics.confusion_matrix's docstring: y_true [2,0,2,2,0,1], y_pred [0,0,2,2,0,2] ->
    # [[2,0,0],[0,0,1],[1,0,2]].
    confusion = metrics.confusion_matrix(np.array([2, 0, 2, 2, 0, 1]), np.array([0, 0, 2, 2, 0, 2]), num_classes=3)
    np.testing.assert_array_equal(confusion, [[2, 0, 0], [0, 0, 1], [1, 0, 2]])

    # sklearn.metrics.classification_report's docstring: y_true [0,1,2,2,2], y_pred [0,0,2,2,1] ->
    # precision 0.50 0.00 1.00, recall 1.00 0.00 0.67, f1 0.67 0.00 0.80, support 1 1 3, accuracy 0.60.
    # Exactly: precision 1/2, 0/1, 2/2; recall 1/1, 0/1, 2/3; f1 2/3, 0, 4/5.
    scores = metrics.per_class(metrics.confusion_matrix(np.array([0, 1, 2, 2, 2]), np.array([0, 0, 2, 2, 1]), 3))
    np.testing.assert_allclose(scores["precision"], [1 / 2, 0, 1], rtol=1e-15)
    np.testing.assert_allclose(scores["recall"], [1, 0, 2 / 3], rtol=1e-15)
    np.testing.assert_allclose(scores["f1"], [2 / 3, 0, 4 / 5], rtol=1e-15)
    assert scores["support"] == [1, 1, 3]
    assert scores["accuracy"] == pytest.approx(0.6, rel=1e-15)

    # sklearn.metrics.precision_recall_fscore_support's docstring (cat 0, dog 1, pig 2):
    # y_true [0,1,2,0,1,2], y_pred [0,2,1,0,0,1], average="macro" -> (0.22..., 0.33..., 0.26...).
    # Per class: precision 2/3, 0/2, 0/1; recall 2/2, 0/2, 0/2; f1 4/5, 0, 0; macro means 2/9, 1/3, 4/15.
    scores = metrics.per_class(metrics.confusion_matrix(np.array([0, 1, 2, 0, 1, 2]), np.array([0, 2, 1, 0, 0, 1]), 3))
    assert np.mean(scores["precision"]) == pytest.approx(2 / 9, rel=1e-15)
    assert np.mean(scores["recall"]) == pytest.approx(1 / 3, rel=1e-15)
    assert np.mean(scores["f1"]) == pytest.approx(4 / 15, rel=1e-15)


# Six samples of three classes in B = 5 bins (edges 0, .2, .4, .6, .8, 1; bin i holds (e_i, e_i+1]).
#   row                  label  argmax  confidence  correct  bin
#   [.9, .05, .05]       0      0       .9          yes      4
#   [.1, .7, .2]         0      1       .7          no       3
#   [.6, .2, .2]         0      0       .6 (edge)   yes      2
#   [.4, .35, .25]       1      0       .4 (edge)   no       1
#   [.5, .3, .2]         0      0       .5          yes      2
#   [.8, .1, .1]         2      0       .8 (edge)   no       3
# Bin 0 stays empty: with three classes the confidence is at least 1/3.
CALIBRATION_PROBABILITIES = np.array(
    [[0.9, 0.05, 0.05], [0.1, 0.7, 0.2], [0.6, 0.2, 0.2], [0.4, 0.35, 0.25], [0.5, 0.3, 0.2], [0.8, 0.1, 0.1]]
)
CALIBRATION_LABELS = np.array([0, 0, 0, 1, 0, 2])


def test_calibration_by_hand_with_an_empty_bin_and_confidences_on_edges():
    result = metrics.calibration(CALIBRATION_PROBABILITIES, CALIBRATION_LABELS, bins=5)
    np.testing.assert_allclose(result["bins"], [0, 0.2, 0.4, 0.6, 0.8, 1], rtol=1e-15)
    assert result["count"] == [0, 1, 2, 2, 1]
    assert result["mean_confidence"][0] is None and result["accuracy"][0] is None
    np.testing.assert_allclose(result["mean_confidence"][1:], [0.4, (0.6 + 0.5) / 2, (0.7 + 0.8) / 2, 0.9], rtol=1e-12)
    np.testing.assert_allclose(result["accuracy"][1:], [0, 1, 0, 1], rtol=1e-15)
    # ECE = (1/6)|0 - .4| + (2/6)|1 - .55| + (2/6)|0 - .75| + (1/6)|1 - .9| = (.4 + .9 + 1.5 + .1) / 6 = 2.9 / 6
    assert result["ece"] == pytest.approx(2.9 / 6, rel=1e-12)
    json.dumps(result, allow_nan=False)  # None, not NaN, for the empty bin


def test_calibration_puts_full_confidence_in_the_last_bin():
    result = metrics.calibration(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]), bins=4)
    assert result["count"] == [0, 0, 0, 2]
    assert result["accuracy"][3] == 0.5 and result["mean_confidence"][3] == 1.0
    assert result["ece"] == pytest.approx(0.5, rel=1e-15)


def test_calibration_of_a_perfectly_calibrated_set_is_zero():
    # 10 samples at .8 with 8 right (bin (.7, .8]), 5 at .6 with 3 right (bin (.5, .6]): acc_b = conf_b.
    probabilities = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 5)
    labels = np.array([0] * 8 + [1] * 2 + [0] * 3 + [1] * 2)
    result = metrics.calibration(probabilities, labels, bins=10)
    assert result["count"][7] == 10 and result["count"][5] == 5 and sum(result["count"]) == 15
    assert result["ece"] == pytest.approx(0, abs=1e-12)


def test_calibration_of_an_over_confident_set_is_its_gap():
    # Always .9 confident, right 6 times in 10: ECE = .9 - .6.
    probabilities = np.array([[0.9, 0.1]] * 10)
    labels = np.array([0] * 6 + [1] * 4)
    assert metrics.calibration(probabilities, labels)["ece"] == pytest.approx(0.3, rel=1e-12)
    # Two bins each .35 over-confident (.95 with 3 of 5 right, .75 with 2 of 5 right): ECE .35.
    probabilities = np.array([[0.95, 0.05]] * 5 + [[0.25, 0.75]] * 5)
    labels = np.array([0, 0, 0, 1, 1] + [1, 1, 0, 0, 0])
    assert metrics.calibration(probabilities, labels, bins=10)["ece"] == pytest.approx(0.35, rel=1e-12)


# Six samples of three classes.
#   row              label  argmax          probability  wrong
#   [.7, .2, .1]     1      0               .7           yes
#   [.1, .8, .1]     1      1               .8           no
#   [.2, .1, .7]     0      2               .7           yes (ties with row 0)
#   [.05, .9, .05]   2      1               .9           yes
#   [.5, .5, 0]      1      0 (lowest wins) .5           yes
#   [.6, .3, .1]     0      0               .6           no
# Most confident first, equal probabilities by index: rows 3, 0, 2, 4.
MISTAKE_PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.05, 0.9, 0.05], [0.5, 0.5, 0.0], [0.6, 0.3, 0.1]]
)
MISTAKE_LABELS = np.array([1, 1, 0, 2, 1, 0])


def test_confident_mistakes_by_hand_with_ties():
    mistakes = metrics.confident_mistakes(MISTAKE_PROBABILITIES, MISTAKE_LABELS)
    np.testing.assert_array_equal(mistakes["index"], [3, 0, 2, 4])
    np.testing.assert_array_equal(mistakes["predicted"], [1, 0, 2, 0])
    np.testing.assert_array_equal(mistakes["label"], [2, 1, 0, 1])
    np.testing.assert_array_equal(mistakes["probability"], [0.9, 0.7, 0.7, 0.5])
    assert all(mistakes[name].dtype == np.int64 for name in ("index", "predicted", "label"))
    assert mistakes["probability"].dtype == np.float64


def test_confident_mistakes_keeps_the_first_k():
    two = metrics.confident_mistakes(MISTAKE_PROBABILITIES, MISTAKE_LABELS, k=2)
    np.testing.assert_array_equal(two["index"], [3, 0])
    none = metrics.confident_mistakes(MISTAKE_PROBABILITIES, MISTAKE_LABELS, k=0)
    assert all(len(column) == 0 for column in none.values())


def test_confident_mistakes_breaks_ties_by_index_whatever_the_order():
    # Eight equally confident mistakes: they come back in index order.
    probabilities = np.array([[0.25, 0.75]] * 8)
    np.testing.assert_array_equal(metrics.confident_mistakes(probabilities, np.zeros(8, np.int64))["index"], range(8))


def test_confident_mistakes_without_mistakes_is_empty():
    mistakes = metrics.confident_mistakes(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1]))
    assert all(len(column) == 0 for column in mistakes.values())
    assert mistakes["index"].dtype == np.int64 and mistakes["probability"].dtype == np.float64


def test_most_confused_by_hand_with_ties_in_row_major_order():
    confusion = np.array([[5, 2, 0], [1, 7, 2], [0, 3, 9]])
    assert metrics.most_confused(confusion) == [
        {"label": 2, "predicted": 1, "count": 3, "fraction_of_label": 0.25},
        {"label": 0, "predicted": 1, "count": 2, "fraction_of_label": 2 / 7},
        {"label": 1, "predicted": 2, "count": 2, "fraction_of_label": 0.2},
        {"label": 1, "predicted": 0, "count": 1, "fraction_of_label": 0.1},
    ]  # the diagonal and the empty cells are not mistakes
    assert metrics.most_confused(confusion, k=2) == metrics.most_confused(confusion)[:2]
    assert metrics.most_confused(np.diag([3, 4])) == []
    json.dumps(metrics.most_confused(confusion))  # plain ints and floats


def test_most_confused_keeps_fractional_counts():
    assert metrics.most_confused(np.array([[1.0, 0.5], [0.0, 2.0]]))[0]["count"] == 0.5


@pytest.mark.parametrize("k, error", [(-1, ValueError), (2.0, TypeError)])
def test_most_confused_refuses_bad_k(k, error):
    with pytest.raises(error, match="^k must be"):
        metrics.most_confused(np.eye(2), k=k)


@pytest.mark.parametrize(
    "labels, predicted, num_classes, error, argument",
    [
        (np.array([[0, 1]]), np.array([[0, 1]]), 3, ValueError, "labels must be 1-D"),
        (np.array([0, 1]), np.array([0, 1, 2]), 3, ValueError, "labels and predicted must have the same shape"),
        (np.array([0.0, 1.0]), np.array([0, 1]), 3, TypeError, "labels must be integers"),
        (np.array([0, 1]), np.array([0.0, 1.0]), 3, TypeError, "predicted must be integers"),
        (np.array([True, False]), np.array([0, 1]), 3, TypeError, "labels must be integers"),
        (np.array([0, 3]), np.array([0, 1]), 3, ValueError, "labels must be classes in 0..2"),
        (np.array([0, 1]), np.array([-1, 1]), 3, ValueError, "predicted must be classes in 0..2"),
        (np.array([0, 1]), np.array([0, 1]), 0, ValueError, "num_classes must be > 0"),
        (np.array([0, 1]), np.array([0, 1]), 3.0, TypeError, "num_classes must be an int"),
    ],
)
def test_confusion_matrix_refuses_bad_input(labels, predicted, num_classes, error, argument):
    with pytest.raises(error, match="^" + argument):
        metrics.confusion_matrix(labels, predicted, num_classes)


@pytest.mark.parametrize(
    "confusion, error, argument",
    [
        (np.zeros((2, 3)), ValueError, "confusion must be a square"),
        (np.zeros(3), ValueError, "confusion must be a square"),
        (np.array([[1, -1], [0, 1]]), ValueError, "confusion must hold finite counts"),
        (np.array([[1, np.nan], [0, 1]]), ValueError, "confusion must hold finite counts"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "confusion must hold counts"),
    ],
)
def test_row_normalised_per_class_and_most_confused_refuse_bad_input(confusion, error, argument):
    for function in (metrics.row_normalised, metrics.per_class, metrics.most_confused):
        with pytest.raises(error, match="^" + argument):
            function(confusion)


GOOD = np.array([[0.9, 0.1], [0.3, 0.7]])


@pytest.mark.parametrize(
    "probabilities, labels, error, argument",
    [
        (np.array([0.9, 0.1]), np.array([0]), ValueError, "probabilities must be \\(N, C\\)"),
        (np.zeros((0, 2)), np.array([], np.int64), ValueError, "probabilities must be \\(N, C\\)"),
        (np.array([[0.9, 0.2], [0.3, 0.7]]), np.array([0, 1]), ValueError, "probabilities must sum to 1"),
        (np.array([[1.1, -0.1], [0.3, 0.7]]), np.array([0, 1]), ValueError, "probabilities must lie in \\[0, 1\\]"),
        (np.array([[np.nan, 0.1], [0.3, 0.7]]), np.array([0, 1]), ValueError, "probabilities must be finite"),
        (np.array([["a", "b"]]), np.array([0]), TypeError, "probabilities must be real numbers"),
        (GOOD, np.array([0, 1, 1]), ValueError, "labels must have one entry per row"),
        (GOOD, np.array([[0, 1]]), ValueError, "labels must be 1-D"),
        (GOOD, np.array([0.0, 1.0]), TypeError, "labels must be integers"),
        (GOOD, np.array([0, 2]), ValueError, "labels must be classes in 0..1"),
    ],
)
def test_calibration_and_confident_mistakes_refuse_bad_input(probabilities, labels, error, argument):
    with pytest.raises(error, match="^" + argument):
        metrics.calibration(probabilities, labels)
    with pytest.raises(error, match="^" + argument):
        metrics.confident_mistakes(probabilities, labels)


def test_rows_summing_to_one_within_the_tolerance_are_accepted():
    metrics.calibration(np.array([[0.9004, 0.1]]), np.array([0]))  # sums to 1.0004, within 1e-3


@pytest.mark.parametrize("bins, error", [(0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError)])
def test_calibration_refuses_bad_bins(bins, error):
    with pytest.raises(error, match="^bins must be"):
        metrics.calibration(GOOD, np.array([0, 1]), bins=bins)


@pytest.mark.parametrize("k, error", [(-1, ValueError), (2.0, TypeError), (None, TypeError)])
def test_confident_mistakes_refuses_bad_k(k, error):
    with pytest.raises(error, match="^k must be"):
        metrics.confident_mistakes(GOOD, np.array([0, 1]), k=k)
