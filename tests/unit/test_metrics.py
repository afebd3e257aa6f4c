"""classification_metrics against values worked out by hand."""
from __future__ import annotations

import math

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


def test_non_finite_probabilities_give_nan_everywhere() -> None:
    proba = _binary([0.2, 0.7])
    proba[0] = np.nan
    metrics = classification_metrics(np.array([0, 1]), proba)
    assert list(metrics) == list(METRIC_NAMES)
    assert all(math.isnan(value) for value in metrics.values())


@pytest.mark.parametrize(
    ("y", "proba", "match"),
    [
        (np.array([0, 1]), _binary([0.5, 0.5, 0.5]), "y_true must be shaped"),
        (np.array([0, 2]), _binary([0.5, 0.5]), r"outside \[0, 1\]"),
        (np.array([0.0, 1.0]), _binary([0.5, 0.5]), "integer class labels"),
        (np.array([0, 1]), np.array([0.5, 0.5]), "proba must be shaped"),
        (np.array([], dtype=int), np.empty((0, 2)), "no samples"),
    ],
)
def test_malformed_input_is_rejected(y: np.ndarray, proba: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, proba)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    num_classes=st.integers(2, 5),
)
def test_bounds_on_random_input(seed: int, n: int, num_classes: int) -> None:
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(num_classes), size=n)
    metrics = classification_metrics(rng.integers(0, num_classes, n), proba)
    assert metrics["loss"] >= 0
    for name in ("accuracy", "f1_macro", "ece"):
        assert 0 <= metrics[name] <= 1
    assert math.isnan(metrics["auroc"]) or 0 <= metrics["auroc"] <= 1
