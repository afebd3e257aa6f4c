"""classification_metrics against values worked out by hand."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trial.metrics import METRIC_MODES, METRIC_NAMES, classification_metrics


def _binary(p1: list[float]) -> np.ndarray:
    p1_array = np.asarray(p1, dtype=np.float64)
    return np.column_stack([1 - p1_array, p1_array])


def test_names_and_modes_agree() -> None:
    assert METRIC_NAMES == ("loss", "accuracy", "f1_macro", "auroc", "ece")
    assert set(METRIC_MODES) == set(METRIC_NAMES)
    assert METRIC_MODES["loss"] == METRIC_MODES["ece"] == "min"
    assert METRIC_MODES["accuracy"] == METRIC_MODES["f1_macro"] == METRIC_MODES["auroc"] == "max"


@pytest.mark.parametrize("num_classes", [2, 4])
def test_perfect_predictions(num_classes: int) -> None:
    y = np.array([0, 1, 1, 0, num_classes - 1])
    metrics = classification_metrics(y, np.eye(num_classes)[y])
    assert list(metrics) == list(METRIC_NAMES)
    assert metrics == {"loss": 0.0, "accuracy": 1.0, "f1_macro": 1.0, "auroc": 1.0, "ece": 0.0}
    assert all(type(value) is float for value in metrics.values())


def test_binary_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p1 = [0.1, 0.42, 0.35, 0.78]
    metrics = classification_metrics(y, _binary(p1))
    # Positive/negative pairs ranked right: 0.35 > 0.1 only, 0.78 > both: 3 of 4.
    assert metrics["auroc"] == pytest.approx(0.75)
    # Predictions [0, 0, 0, 1]: three right.
    assert metrics["accuracy"] == pytest.approx(0.75)
    # Class 0: precision 2/3, recall 1 -> F1 0.8; class 1: precision 1, recall 1/2 -> 2/3.
    assert metrics["f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.58, 0.35, 0.78])))
    # Confidences 0.9, 0.58, 0.65, 0.78 fall into four different bins, right, right, wrong, right.
    assert metrics["ece"] == pytest.approx((0.1 + 0.42 + 0.65 + 0.22) / 4)


def test_multiclass_one_vs_rest_by_hand() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.array(
        [
            [0.6, 0.3, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.2, 0.7],
            [0.3, 0.4, 0.3],
            [0.5, 0.3, 0.2],
            [0.2, 0.2, 0.6],
        ]
    )
    metrics = classification_metrics(y, proba)
    # Class 0: 7 of 8 pairs; class 1: 6 pairs and one tie of 8; class 2: all 8.
    assert metrics["auroc"] == pytest.approx((7 / 8 + 6.5 / 8 + 1.0) / 3)
    # Predictions [0, 1, 2, 1, 0, 2]: F1 of 1/2, 1/2 and 1.
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["f1_macro"] == pytest.approx(2 / 3)


def test_multiclass_skips_a_class_absent_from_labels() -> None:
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.3, 0.35, 0.35], [0.4, 0.3, 0.3]])
    # Class 0: pos {0.7, 0.3} vs neg {0.2, 0.4}: 3 of 4; class 1: pos {0.5, 0.3} vs neg {0.2, 0.35}: 3 of 4.
    assert classification_metrics(y, proba)["auroc"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("y", "proba"),
    [
        (np.array([1, 1, 1]), _binary([0.2, 0.6, 0.9])),
        (np.array([2, 2]), np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])),
    ],
)
def test_auroc_is_nan_with_one_class_present(y: np.ndarray, proba: np.ndarray) -> None:
    # Quietly: a tiny validation split can hold one class, every epoch of every trial.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classification_metrics(y, proba)
    assert math.isnan(metrics["auroc"])
    assert not math.isnan(metrics["accuracy"])


def test_ece_of_a_calibrated_and_an_overconfident_model() -> None:
    y = np.array([1] * 8 + [0] * 2)
    # Says 80% and is right 80% of the time.
    assert classification_metrics(y, _binary([0.8] * 10))["ece"] == pytest.approx(0.0)
    # Says 90% and is right 60% of the time.
    y = np.array([1] * 6 + [0] * 4)
    assert classification_metrics(y, _binary([0.9] * 10))["ece"] == pytest.approx(0.3)


def test_confident_mistake_gives_a_large_finite_loss() -> None:
    metrics = classification_metrics(np.array([1, 0]), _binary([0.0, 0.0]))
    assert metrics["loss"] == pytest.approx(-np.log(1e-15) / 2)


def test_low_precision_probabilities_are_scored_in_float64() -> None:
    # Half-precision softmax output (AMP) is widened first: the log and the sums in float16
    # would be off in the third decimal.
    y = np.array([0, 1, 1, 0, 1])
    proba16 = _binary([0.1, 0.7, 0.35, 0.2, 0.9]).astype(np.float16)
    metrics = classification_metrics(y, proba16)
    expected = classification_metrics(y, proba16.astype(np.float64))
    for name in METRIC_NAMES:
        assert metrics[name] == pytest.approx(expected[name], rel=1e-12), name


def test_non_finite_probabilities_give_nan_everywhere() -> None:
    proba = _binary([0.2, 0.7])
    proba[0] = np.nan
    metrics = classification_metrics(np.array([0, 1]), proba)
    assert list(metrics) == list(METRIC_NAMES)
    assert all(math.isnan(value) for value in metrics.values())


@pytest.mark.parametrize(
    ("y", "proba", "match"),
    [
        (np.array([0, 1]), _binary([0.5, 0.5, 0.5]), r"^y_true must be shaped \[3\] to match proba, got \[2\]$"),
        (np.array([[0, 1]]), _binary([0.5]), r"^y_true must be shaped \[1\] to match proba, got \[1, 2\]$"),
        (np.array([0, 2]), _binary([0.5, 0.5]), r"^y_true holds labels in \[0, 2\], outside \[0, 1\] for proba's columns$"),
        (np.array([-1, 1]), _binary([0.5, 0.5]), r"outside \[0, 1\]"),
        (np.array([0.0, 1.0]), _binary([0.5, 0.5]), r"^y_true must hold integer class labels, got dtype float64$"),
        (np.array([0, 1]), np.array([0.5, 0.5]), r"^proba must be shaped \[N, num_classes >= 2\], got \[2\]$"),
        (np.array([0]), np.array([[1.0]]), r"^proba must be shaped \[N, num_classes >= 2\], got \[1, 1\]$"),
        (np.array([], dtype=int), np.empty((0, 2)), "^no samples to score$"),
    ],
)
def test_malformed_input_is_rejected(y: np.ndarray, proba: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, proba)


def test_macro_f1_weighs_classes_equally_whatever_their_size() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    proba = _binary([0.2, 0.3, 0.4, 0.7, 0.6, 0.45])  # predictions [0, 0, 0, 1, 1, 0]
    # Class 0: 3 TP, 1 FP, 1 FN -> F1 3/4; class 1: 1 TP, 1 FP, 1 FN -> F1 1/2. Macro: 5/8.
    # Weighted by class size it would be 2/3, as would micro F1 (= accuracy).
    assert classification_metrics(y, proba)["f1_macro"] == pytest.approx(5 / 8)


def test_ece_keeps_neighbouring_bins_apart() -> None:
    # Bins are (k/15, (k+1)/15]. Confidence 0.6 = 9/15 is the top edge of bin 8 and 0.62 lies in
    # bin 9; 0.9 is in bin 13 and 0.95 in bin 14, the last. In each pair one is right and one
    # wrong, so merging either pair (binning off by one at either end) lowers the ECE.
    y = np.array([0, 1, 1, 2])
    proba = np.array([[0.6, 0.3, 0.1], [0.62, 0.2, 0.18], [0.05, 0.9, 0.05], [0.95, 0.03, 0.02]])
    assert classification_metrics(y, proba)["ece"] == pytest.approx((0.4 + 0.62 + 0.1 + 0.95) / 4)


def test_ece_gives_the_lowest_confidences_their_own_bin() -> None:
    # With 20 classes a confidence can fall in bin 0, (0, 1/15]: 0.05 (right) must not
    # share bin 1, (1/15, 2/15], with 0.1 (wrong). An all-zero row has confidence 0,
    # which counts in bin 0 too (its sample is right: argmax picks class 0).
    uniform = np.full(20, 0.05)
    peaked = np.array([0.1] * 2 + [0.9 / 18] * 18)
    y = np.array([0, 3, 0])
    proba = np.stack([uniform, peaked, np.zeros(20)])
    # Bin 0: |(1 - 0.05) + (1 - 0)| = 1.95; bin 1: |0 - 0.1| = 0.1.
    assert classification_metrics(y, proba)["ece"] == pytest.approx((1.95 + 0.1) / 3)


def test_f1_of_a_model_that_predicts_one_class_warns_nothing() -> None:
    # Early epochs often predict a single class; that is a score of 0 for the others, not a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classification_metrics(np.array([0, 1, 1, 2]), np.tile([0.2, 0.7, 0.1], (4, 1)))
    # Class 1: precision 2/4, recall 1 -> F1 2/3; classes 0 and 2 never predicted: F1 0.
    assert metrics["f1_macro"] == pytest.approx((2 / 3) / 3)


def _reference_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The documented definitions, computed the slow, obvious way."""
    n, num_classes = proba.shape
    predicted = [max(range(num_classes), key=lambda c: (proba[i, c], -c)) for i in range(n)]
    f1s = []
    for c in sorted(set(y.tolist()) | set(predicted)):
        tp = sum(1 for t, p in zip(y, predicted) if t == c and p == c)
        fp = sum(1 for t, p in zip(y, predicted) if t != c and p == c)
        fn = sum(1 for t, p in zip(y, predicted) if t == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn))
    aurocs = []
    for c in [1] if num_classes == 2 else range(num_classes):
        pos = [proba[i, c] for i in range(n) if y[i] == c]
        neg = [proba[i, c] for i in range(n) if y[i] != c]
        if pos and neg:
            aurocs.append(sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg)))
    gaps = 0.0
    confidence = proba.max(axis=1)
    for k in range(15):
        in_bin = [i for i in range(n) if k / 15 < confidence[i] <= (k + 1) / 15]
        gaps += abs(sum((predicted[i] == y[i]) - confidence[i] for i in in_bin))
    return {
        "loss": -sum(math.log(proba[i, y[i]]) for i in range(n)) / n,
        "accuracy": sum(p == t for p, t in zip(predicted, y)) / n,
        "f1_macro": sum(f1s) / len(f1s),
        "auroc": sum(aurocs) / len(aurocs) if aurocs else math.nan,
        "ece": gaps / n,
    }


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    num_classes=st.integers(2, 5),
)
def test_matches_the_definitions_on_random_input(seed: int, n: int, num_classes: int) -> None:
    rng = np.random.default_rng(seed)
    # Uneven class frequencies, and probabilities rounded to tenths so that ties occur.
    y = rng.choice(num_classes, size=n, p=rng.dirichlet(np.ones(num_classes)))
    proba = np.round(rng.dirichlet(np.ones(num_classes), size=n), 1) + 1e-3
    proba /= proba.sum(axis=1, keepdims=True)
    metrics = classification_metrics(y, proba)
    expected = _reference_metrics(y, proba)
    for name in METRIC_NAMES:
        assert metrics[name] == pytest.approx(expected[name], nan_ok=True), name


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 3000),
    num_classes=st.integers(2, 10),
    decimals=st.sampled_from([1, 2, 6]),
)
def test_equals_scikit_learns_f1_and_auroc(seed: int, n: int, num_classes: int, decimals: int) -> None:
    # trial.metrics computes these in numpy so that trial processes need not import
    # scikit-learn; they must be the numbers scikit-learn gives, ties and absent classes included.
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(seed)
    y = rng.choice(num_classes, size=n, p=rng.dirichlet(np.ones(num_classes) * 0.5))
    proba = np.round(rng.dirichlet(np.ones(num_classes), size=n), decimals) + 1e-9
    proba /= proba.sum(axis=1, keepdims=True)
    metrics = classification_metrics(y, proba)
    assert metrics["f1_macro"] == pytest.approx(f1_score(y, proba.argmax(axis=1), average="macro"), rel=1e-12, abs=1e-12)
    classes = [1] if num_classes == 2 else range(num_classes)
    present = [c for c in classes if 0 < (y == c).sum() < n]
    expected = np.mean([roc_auc_score(y == c, proba[:, c]) for c in present]) if present else math.nan
    assert metrics["auroc"] == pytest.approx(expected, rel=1e-12, abs=1e-12, nan_ok=True)
