"""Classification metrics computed from predicted probabilities.

One function, used for every epoch's validation report and for the final test
evaluation, so that the numbers in Tune, MLflow and the report are the same numbers.

Numpy only: every trial process, ensemble member actor and TorchTrainer worker imports
this module, and scikit-learn's metrics (with scipy) would add about 0.5 s to each one's
start and 70 MiB to its memory. tests/unit/test_metrics.py checks the results equal
scikit-learn's `f1_score` and `roc_auc_score`.
"""
from __future__ import annotations

import numpy as np

METRIC_NAMES: tuple[str, ...] = ("loss", "accuracy", "f1_macro", "auroc", "ece")
"""Keys of the dict `classification_metrics` returns, in reporting order."""

METRIC_MODES: dict[str, str] = {
    "loss": "min",
    "accuracy": "max",
    "f1_macro": "max",
    "auroc": "max",
    "ece": "min",
}
"""Which direction is better for each metric, in Ray Tune's terms ("min" or "max")."""

ECE_BINS = 15
# Probabilities are clipped before the log so one confident mistake gives a large,
# finite loss (-log(1e-15) ~ 34.5) instead of inf, which would swamp every mean.
_PROBA_FLOOR = 1e-15


VOTE_METRICS: tuple[str, ...] = ("accuracy", "f1_macro")
"""What a majority vote is scored by: it gives classes, no probabilities."""


def vote_metrics(y_true: np.ndarray, member_proba: list[np.ndarray]) -> dict[str, float]:
    """Accuracy and macro F1 of an ensemble's majority vote: each member votes for its most
    probable class; a tie goes to the tied class with the highest mean probability."""
    stacked = np.stack([np.asarray(proba, dtype=np.float64) for proba in member_proba])  # [members, N, C]
    votes = np.stack([(stacked.argmax(axis=2) == c).sum(axis=0) for c in range(stacked.shape[2])], axis=1)
    # A mean probability is at most 1, so half of it only decides between equal vote counts.
    predicted = (votes + stacked.mean(axis=0) / 2).argmax(axis=1)
    one_hot = np.eye(stacked.shape[2])[predicted]
    scored = classification_metrics(y_true, one_hot)
    return {name: scored[name] for name in VOTE_METRICS}


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Metrics of predicted class probabilities `proba` [N, C] against integer labels `y_true` [N].

    - loss: mean cross-entropy, -log of the true class's probability clipped at 1e-15.
    - accuracy: share of samples whose most probable class is the true one.
    - f1_macro: unweighted mean F1 over the classes present in labels or predictions.
    - auroc: binary (C == 2): positive class 1. Multiclass: one-vs-rest, averaged over
      the classes present in `y_true`. nan where undefined (only one class present).
    - ece: expected calibration error of the top-class probability over 15 equal-width bins.

    Every metric is nan when `proba` holds a non-finite value, as a diverged model's
    softmax does, so a bad trial is recorded as such instead of crashing the sweep.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    _check_inputs(y_true, proba)
    if not np.isfinite(proba).all():
        return {name: float("nan") for name in METRIC_NAMES}

    y_true = y_true.astype(np.int64)
    n = len(y_true)
    predicted = proba.argmax(axis=1)
    true_proba = np.maximum(proba[np.arange(n), y_true], _PROBA_FLOOR)
    return {
        "loss": float(-np.log(true_proba).mean()),
        "accuracy": float((predicted == y_true).mean()),
        "f1_macro": _f1_macro(y_true, predicted, proba.shape[1]),
        "auroc": _auroc(y_true, proba),
        "ece": _ece(y_true, proba, predicted),
    }


def _check_inputs(y_true: np.ndarray, proba: np.ndarray) -> None:
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"proba must be shaped [N, num_classes >= 2], got {list(proba.shape)}")
    if y_true.ndim != 1 or len(y_true) != len(proba):
        raise ValueError(f"y_true must be shaped [{len(proba)}] to match proba, got {list(y_true.shape)}")
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class labels, got dtype {y_true.dtype}")
    if y_true.min() < 0 or y_true.max() >= proba.shape[1]:
        raise ValueError(
            f"y_true holds labels in [{y_true.min()}, {y_true.max()}], "
            f"outside [0, {proba.shape[1] - 1}] for proba's columns"
        )


def _f1_macro(y_true: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Unweighted mean F1 over the classes in labels or predictions (scikit-learn's
    `f1_score(average="macro")`): there F1 = 2TP / (2TP + FP + FN) never divides by 0."""
    true_count = np.bincount(y_true, minlength=num_classes)
    predicted_count = np.bincount(predicted, minlength=num_classes)
    true_positives = np.bincount(y_true[predicted == y_true], minlength=num_classes)
    present = (true_count + predicted_count) > 0
    # 2TP + FP + FN = (TP + FN) + (TP + FP): the class's labels plus its predictions.
    return float(np.mean(2 * true_positives[present] / (true_count + predicted_count)[present]))


def _binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve, as the Mann-Whitney statistic: the chance a positive
    scores above a negative, a tie counting half (equal to the trapezoidal area scikit-learn
    computes), from the scores' ranks with ties given their mean rank."""
    _, group, group_size = np.unique(score, return_inverse=True, return_counts=True)
    # A tied group's ranks run from (ranks before it) + 1 to + its size: their mean is below.
    group_end = np.cumsum(group_size)
    rank = (group_end - (group_size - 1) / 2)[group]
    positives = int(positive.sum())
    negatives = len(positive) - positives
    return float((rank[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _auroc(y_true: np.ndarray, proba: np.ndarray) -> float:
    classes = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    scores = [
        _binary_auroc(y_true == c, proba[:, c])
        for c in classes
        # A class absent from y_true has no positives and one that is every sample has
        # no negatives: its one-vs-rest AUROC is undefined, so it is left out.
        if (y_true == c).any() and (y_true != c).any()
    ]
    return float(np.mean(scores)) if scores else float("nan")


def _ece(y_true: np.ndarray, proba: np.ndarray, predicted: np.ndarray) -> float:
    confidence = proba.max(axis=1)
    # Bins are (k/15, (k+1)/15]; a confidence of exactly 0 (an all-zero row) counts in the first.
    bins = np.maximum(np.ceil(confidence * ECE_BINS).astype(np.int64) - 1, 0)
    # sum over bins of |B|/N * |accuracy(B) - confidence(B)| = sum |sum_B(correct - confidence)| / N
    gap = np.bincount(bins, weights=(predicted == y_true) - confidence)
    return float(np.abs(gap).sum() / len(y_true))
