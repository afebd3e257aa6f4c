"""After the sweep: the best trial's model, or its ensemble, evaluated on every split.

A single model predicts train, valid and test. An ensemble (search.cv, search.repeats)
averages its members' probabilities: on test (the fixed split no member trained or
validated on) the mean probability is the sweep's test result, beside the members' own
and their majority vote; on valid each row gets the mean of the members that held it out
(cross-validation's out-of-fold predictions), and `valid/<m>` is the mean of the members'
own valid metrics, which is what the search ranked trials by.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from trial.data import SplitData, open_split, rows_of
from trial.loop import TrialJob, load_trained_model, predict, split_metrics
from trial.metrics import classification_metrics, vote_metrics
from trial.runs import SPLITS, VOTE


@dataclass(frozen=True)
class Evaluation:
    predictions: dict[str, tuple[SplitData, np.ndarray]]
    """split -> its rows and the model's (the ensemble's) probabilities."""
    metrics: dict[str, float]
    """valid/<m> and test/<m>; an ensemble's also valid/<m>_std, valid/<member>/<m> (on the
    rows it held out), test/<member>/<m>, test/vote/<m>."""
    member_predictions: dict[str, tuple[SplitData, np.ndarray]] = field(default_factory=dict)
    """An ensemble's: member label -> its test rows and probabilities."""


def evaluate_best(job: TrialJob, weights: Mapping[str, Mapping[str, torch.Tensor]]) -> Evaluation:
    """Evaluate the best trial's weights by member label (one model: the label "")."""
    if not job.members:
        return _evaluate_model(job, weights[""])
    return _evaluate_ensemble(job, weights)


def _evaluate_model(job: TrialJob, weights: Mapping[str, torch.Tensor]) -> Evaluation:
    model = load_trained_model(job, weights)
    frame = job.data.frame()
    predictions, metrics = {}, {}
    for split_name in SPLITS:
        split = open_split(job.data, split_name, frame)
        proba = _predict(job, model, split)
        predictions[split_name] = (split, proba)
        if split_name != "train":
            metrics.update(split_metrics(split, proba, prefix=split_name))
    return Evaluation(predictions=predictions, metrics=metrics)


def _evaluate_ensemble(job: TrialJob, weights: Mapping[str, Mapping[str, torch.Tensor]]) -> Evaluation:
    frame = job.data.frame()
    models = {member: load_trained_model(job, weights[member.label]) for member in job.members}
    metrics: dict[str, float] = {}

    # Test: the mean probability, each member's, and the majority vote.
    test = open_split(job.data, "test", frame)
    member_test = {member.label: (test, _predict(job, model, test)) for member, model in models.items()}
    test_proba = [proba for _, proba in member_test.values()]
    metrics.update(split_metrics(test, np.mean(test_proba, axis=0), prefix="test"))
    for label, (_, proba) in member_test.items():
        metrics.update(split_metrics(test, proba, prefix=f"test/{label}"))
    metrics.update({f"test/{VOTE}/{name}": value for name, value in vote_metrics(test.y, test_proba).items()})

    # Valid: each member on the rows it held out (valid/<member>/<m>: what one member would
    # be picked by, test unseen); the mean (and spread) of their metrics, and every held-out
    # row's mean probability over the members that held it out.
    totals = np.zeros((len(frame), job.data.num_classes))
    counts = np.zeros(len(frame), dtype=np.int64)
    member_valid = []
    for member, model in models.items():
        valid = open_split(job.data, "valid", frame, fold=member.fold)
        proba = _predict(job, model, valid)
        scores = classification_metrics(valid.y, proba)
        metrics.update({f"valid/{member.label}/{name}": value for name, value in scores.items()})
        member_valid.append(scores)
        totals[valid.rows] += proba
        counts[valid.rows] += 1
    for name in member_valid[0]:
        values = np.array([scores[name] for scores in member_valid])
        metrics[f"valid/{name}"], metrics[f"valid/{name}_std"] = float(values.mean()), float(values.std())
    held_out = rows_of(job.data, frame, counts > 0)
    predictions = {
        "valid": (held_out, totals[held_out.rows] / counts[held_out.rows, None]),
        "test": (test, np.mean(test_proba, axis=0)),
    }

    # Train: only where every member trained on the same rows (no folds).
    if all(member.fold is None for member in job.members):
        train = open_split(job.data, "train", frame)
        predictions["train"] = (train, np.mean([_predict(job, model, train) for model in models.values()], axis=0))
    return Evaluation(
        predictions={name: predictions[name] for name in SPLITS if name in predictions},
        metrics=metrics,
        member_predictions=member_test,
    )


def _predict(job: TrialJob, model: torch.nn.Module, split: SplitData) -> np.ndarray:
    return predict(model, split, torch.device("cpu"), batch_size=job.params.batch_size)
