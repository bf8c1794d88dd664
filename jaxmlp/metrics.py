"""What a trained classifier gets right and wrong: confusion, per-class scores, calibration, confident mistakes.

Everything here runs on the host in numpy, after evaluation: arrays of labels,
predicted classes or predicted probabilities come in, numpy arrays or plain dicts
of lists, floats and None come out (the dicts go straight into `json.dumps`).
The conventions are sklearn's where sklearn has one:

- a confusion matrix has one row per true class and one column per predicted
  class (`sklearn.metrics.confusion_matrix`);
- a score whose denominator is 0 is 0, not NaN (sklearn's `zero_division=0`):
  the precision of a class never predicted, the recall of a class with no samples;
- the predicted class is the argmax of a row of probabilities, the lowest class
  winning a tie (`np.argmax`).

Calibration follows Guo et al. (2017), "On calibration of modern neural networks":
a sample's confidence is its largest probability, and the expected calibration
error is the sample-weighted mean gap between accuracy and confidence over
equal-width bins.
"""

from __future__ import annotations

import numpy as np

from jaxmlp import inputs

ROW_SUM_TOLERANCE = 1e-3  # how far a row of probabilities may sum from 1


def _class_labels(name: str, values, num_classes: int) -> np.ndarray:
    """(N,) integer classes in 0..num_classes-1 as int64, or TypeError / ValueError naming `name`."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, one class per sample; got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"{name} must be integers (class indices); got dtype {values.dtype}")
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(
            f"{name} must be classes in 0..{num_classes - 1}; got values from {values.min()} to {values.max()}"
        )
    return values.astype(np.int64)


def _probability_rows(probabilities) -> np.ndarray:
    """(N, C) rows of finite probabilities in [0, 1] summing to 1 (within ROW_SUM_TOLERANCE) as float64."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[0] == 0 or probabilities.shape[1] == 0:
        raise ValueError(
            f"probabilities must be (N, C) with N, C >= 1, one row per sample; got shape {probabilities.shape}"
        )
    if not (np.issubdtype(probabilities.dtype, np.floating) or np.issubdtype(probabilities.dtype, np.integer)):
        raise TypeError(f"probabilities must be real numbers; got dtype {probabilities.dtype}")
    probabilities = probabilities.astype(np.float64)
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("probabilities must be finite; got NaN or infinity")
    if probabilities.min() < 0 or probabilities.max() > 1:
        raise ValueError(
            f"probabilities must lie in [0, 1]; got values from {probabilities.min()} to {probabilities.max()}"
        )
    row_error = np.abs(probabilities.sum(axis=1) - 1)  # (N,)
    if row_error.max() > ROW_SUM_TOLERANCE:
        worst = int(np.argmax(row_error))
        raise ValueError(
            f"probabilities must sum to 1 in each row (within {ROW_SUM_TOLERANCE:g}); "
            f"row {worst} sums to {probabilities[worst].sum():.6g}"
        )
    return probabilities


def _samples_with_labels(probabilities, labels) -> tuple[np.ndarray, np.ndarray]:
    """Checked (N, C) probabilities and (N,) labels in 0..C-1."""
    probabilities = _probability_rows(probabilities)
    labels = _class_labels("labels", labels, probabilities.shape[1])
    if labels.shape[0] != probabilities.shape[0]:
        raise ValueError(
            f"labels must have one entry per row of probabilities ({probabilities.shape[0]}); got {labels.shape[0]}"
        )
    return probabilities, labels


def _confusion_counts(confusion) -> np.ndarray:
    """(C, C) non-negative finite counts as float64, or TypeError / ValueError naming `confusion`."""
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix; got shape {confusion.shape}")
    if not (np.issubdtype(confusion.dtype, np.integer) or np.issubdtype(confusion.dtype, np.floating)):
        raise TypeError(f"confusion must hold counts (integers or floats); got dtype {confusion.dtype}")
    confusion = confusion.astype(np.float64)
    if not np.all(np.isfinite(confusion)) or (confusion.size and confusion.min() < 0):
        raise ValueError("confusion must hold finite counts >= 0")
    return confusion


def _ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, 0 where the denominator is 0 (sklearn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(np.shape(numerator)), where=denominator > 0)


def confusion_matrix(labels, predicted, num_classes: int = 10) -> np.ndarray:
    """(N,) true and (N,) predicted classes -> (C, C) int64 counts, C = num_classes.

    confusion[i, j] = #{n : labels[n] = i and predicted[n] = j}: row = true class,
    column = predicted class, as `sklearn.metrics.confusion_matrix`. The diagonal
    holds the correct predictions; row i sums to the support of class i, column j
    to the number of times j was predicted.
    """
    inputs.check_count("num_classes", num_classes)
    labels = _class_labels("labels", labels, num_classes)
    predicted = _class_labels("predicted", predicted, num_classes)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels and predicted must have the same shape; got {labels.shape} and {predicted.shape}")
    cells = labels * num_classes + predicted  # (N,) flat index of each sample's cell
    return np.bincount(cells, minlength=num_classes**2).reshape(num_classes, num_classes).astype(np.int64)


def row_normalised(confusion) -> np.ndarray:
    """(C, C) counts -> (C, C) float64 with each row divided by its sum.

    With row = true class, entry [i, j] is the fraction of class i predicted as j, and the
    diagonal is each class's recall. A row with no samples stays all 0 (not NaN).
    """
    confusion = _confusion_counts(confusion)
    row_sums = confusion.sum(axis=1, keepdims=True)  # (C, 1)
    return _ratio_or_zero(confusion, row_sums)


def most_confused(confusion, k: int = 10) -> list[dict]:
    """(C, C) counts (row = true, column = predicted) -> the k most frequent mistakes, as JSON-ready rows
    {"label": i, "predicted": j, "count": confusion[i, j], "fraction_of_label": confusion[i, j] / support_i}.

    Only off-diagonal cells with a count above 0 are listed, the largest count first,
    equal counts in row-major order (lower true class, then lower predicted class).
    """
    confusion = _confusion_counts(confusion)
    inputs.check_count("k", k, allow_zero=True)
    fractions = row_normalised(confusion)  # (C, C)
    off_diagonal = np.where(np.eye(len(confusion), dtype=bool), 0, confusion)  # (C, C)
    cells = np.flatnonzero(off_diagonal)  # (M,) ascending row-major indices
    order = cells[np.argsort(-off_diagonal.flat[cells], kind="stable")][:k]
    return [
        {
            "label": int(cell // len(confusion)),
            "predicted": int(cell % len(confusion)),
            "count": _count(off_diagonal.flat[cell]),
            "fraction_of_label": float(fractions.flat[cell]),
        }
        for cell in order
    ]


def _count(value: float) -> int | float:
    """A count as a JSON number: an int when whole (counts from `confusion_matrix`), else the float."""
    return int(value) if float(value).is_integer() else float(value)


def per_class(confusion) -> dict:
    """(C, C) counts (row = true, column = predicted) -> {"precision", "recall", "f1", "support": [C] lists,
    "accuracy": float}.

    With tp_c = confusion[c, c]:
        precision_c = tp_c / sum_i confusion[i, c]   (of the samples predicted c, the fraction truly c)
        recall_c    = tp_c / sum_j confusion[c, j]   (of the samples truly c, the fraction predicted c)
        f1_c        = 2 precision_c recall_c / (precision_c + recall_c)
        support_c   = sum_j confusion[c, j]          (samples truly c)
        accuracy    = sum_c tp_c / sum_ij confusion[i, j]
    Each is 0 where its denominator is 0 (sklearn's zero_division=0): the precision of a
    class never predicted, the recall of a class with no samples, the F1 of a class
    with both 0, the accuracy of an empty matrix.
    """
    confusion = _confusion_counts(confusion)
    correct = np.diag(confusion)  # (C,)
    support = confusion.sum(axis=1)  # (C,) samples per true class
    predicted_count = confusion.sum(axis=0)  # (C,) samples per predicted class
    precision = _ratio_or_zero(correct, predicted_count)
    recall = _ratio_or_zero(correct, support)
    f1 = _ratio_or_zero(2 * precision * recall, precision + recall)
    accuracy = _ratio_or_zero(correct.sum(), confusion.sum())
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": [_count(s) for s in support],
        "accuracy": float(accuracy),
    }


def calibration(probabilities, labels, bins: int = 15) -> dict:
    """(N, C) probabilities and (N,) labels -> the numbers of a reliability diagram and the ECE.

    A sample's confidence is its largest probability and it is correct when its argmax
    (lowest class on a tie) equals its label. The B = `bins` equal-width bins split [0, 1]
    at edges e_i = i / B; bin i holds the confidences in (e_i, e_{i+1}], and the first
    bin also holds a confidence of exactly 0. Returns, JSON-ready:
        "bins": [B + 1] edges e_0 = 0, ..., e_B = 1
        "count": [B] samples n_b in each bin
        "mean_confidence": [B] conf_b = mean confidence in the bin, None for an empty bin
        "accuracy": [B] acc_b = fraction correct in the bin, None for an empty bin
        "ece": sum_b (n_b / N) |acc_b - conf_b|   (Guo et al., 2017; empty bins add 0)
    A perfectly calibrated classifier (acc_b = conf_b) has ECE 0; one that is always
    c confident and right a fraction a < c of the time has ECE c - a.
    """
    probabilities, labels = _samples_with_labels(probabilities, labels)
    inputs.check_count("bins", bins)
    confidence = probabilities.max(axis=1)  # (N,)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)  # (N,)
    # (B + 1,) i / B rounded once, so the edge is the float a user writes (linspace's 3 * 0.2 is 0.6000000000000001).
    edges = np.arange(bins + 1) / bins
    # searchsorted(side="left") gives the first edge >= confidence, so (e_i, e_{i+1}] -> i + 1; 0 -> 0, kept in bin 0.
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (N,)
    count = np.bincount(bin_of, minlength=bins)  # (B,)
    mean_confidence = _ratio_or_zero(np.bincount(bin_of, weights=confidence, minlength=bins), count)  # (B,)
    accuracy = _ratio_or_zero(np.bincount(bin_of, weights=correct, minlength=bins), count)  # (B,)
    ece = float(np.sum(count / len(labels) * np.abs(accuracy - mean_confidence)))
    return {
        "bins": edges.tolist(),
        "count": count.tolist(),
        "mean_confidence": [float(c) if n else None for c, n in zip(mean_confidence, count)],
        "accuracy": [float(a) if n else None for a, n in zip(accuracy, count)],
        "ece": ece,
    }


def confident_mistakes(probabilities, labels, k: int = 25) -> dict:
    """(N, C) probabilities and (N,) labels -> the k wrong predictions made with the most confidence.

    A prediction is the argmax of a row (lowest class on a tie) and is wrong when it
    differs from the label; its probability is that row's largest entry. The mistakes
    are sorted by probability, highest first, and equal probabilities by sample index,
    lowest first, so the order is deterministic. Returns a table of M = min(k, mistakes)
    rows as four (M,) arrays:
        "index": int64 sample index into probabilities / labels
        "predicted": int64 predicted class
        "label": int64 true class
        "probability": float64 probability given to the predicted class
    """
    probabilities, labels = _samples_with_labels(probabilities, labels)
    inputs.check_count("k", k, allow_zero=True)
    predicted = probabilities.argmax(axis=1)  # (N,)
    probability = probabilities.max(axis=1)  # (N,)
    wrong = np.flatnonzero(predicted != labels)  # (W,) ascending sample indices
    # lexsort sorts by its last key first: probability descending, then index ascending.
    order = wrong[np.lexsort((wrong, -probability[wrong]))][:k]  # (M,)
    return {
        "index": order.astype(np.int64),
        "predicted": predicted[order].astype(np.int64),
        "label": labels[order],
        "probability": probability[order],
    }
