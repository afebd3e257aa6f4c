"""Ensemble trials without Ray: folds (search.cv) and seeds (search.repeats) trained side
by side in one process, their mean reported, resumed from one checkpoint, evaluated as
an ensemble. The same trials through real Ray (actors, kills) are in
tests/integration/test_cv.py."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from trial.config import resolve
from trial.context import LocalContext, save_state
from trial.data import open_split, prepare_data, split_mask
from trial.errors import ConfigError
from trial.evaluation import evaluate_best
from trial.loop import (
    Member,
    MemberTrainings,
    ensemble_members,
    ensemble_metrics,
    read_weights,
    train_ensemble,
    train_solver,
)
from trial.metrics import vote_metrics
from trial.ray_backend import concurrency_cap, members_in_parallel
from trial.seeding import repeat_seed
from trial.sweep import sweep_job

FOLDS = 3


def raw_config(root, **search) -> dict:
    return {
        "name": "cv",
        "seed": 3,
        "data": {
            "dataset": "demo_ecg",
            "dataset_params": {"n_recordings": 180, "length": 256},
            "root": str(root / "data"),
            "split": {"folds": FOLDS, "test": 0.2},
        },
        # Dropout and an augmentation draw from torch's generators: members sharing a process
        # must each keep their own.
        "solver": {
            "name": "ecg_cnn1d",
            "params": {"epochs": 3, "batch_size": 16, "channels": 8, "dropout": 0.3, "augment": ["noise"]},
        },
        "search": {"metric": "valid/auroc", "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}, **search},
        "storage": str(root / "runs"),
    }


@pytest.fixture(scope="module")
def cv_job(tmp_path_factory):
    config = resolve(raw_config(tmp_path_factory.mktemp("cv"), cv=True))
    return sweep_job(config, prepare_data(config)).with_trial_params({"lr": 3e-3})


def local_pool(job):
    return lambda states: MemberTrainings(job, job.members, states, "local")


def test_members_are_every_fold_and_repeat():
    assert ensemble_members(None, 1) == ()
    assert [m.label for m in ensemble_members(3, 1)] == ["fold0", "fold1", "fold2"]
    assert [m.label for m in ensemble_members(None, 2)] == ["seed0", "seed1"]
    assert [m.label for m in ensemble_members(2, 2)] == ["fold0-seed0", "fold0-seed1", "fold1-seed0", "fold1-seed1"]


def test_repeat_seeds_keep_the_root_first_and_differ_after():
    assert repeat_seed(42, 0) == 42
    seeds = [repeat_seed(42, r) for r in range(5)]
    assert len(set(seeds)) == 5 and seeds == [repeat_seed(42, r) for r in range(5)]
    assert all(0 <= seed < 2**32 for seed in seeds)


def test_each_fold_validates_on_its_own_rows_and_trains_on_the_others(cv_job):
    frame = cv_job.data.frame()
    test = split_mask(frame, "test")
    valids = [split_mask(frame, "valid", fold) for fold in range(FOLDS)]
    assert (np.sum(valids, axis=0) == ~test).all()  # every non-test row held out exactly once
    for fold, valid in enumerate(valids):
        train = split_mask(frame, "train", fold)
        assert not (train & valid).any() and not (train & test).any() and (train | valid | test).all()
        assert (split_mask(frame, "test", fold) == test).all()


def test_the_report_is_the_mean_and_spread_over_members_and_each_members_own():
    members = {"fold0": {"valid/auroc": 0.8, "train/loss": 1.0}, "fold1": {"valid/auroc": 0.6, "train/loss": 3.0}}
    report = ensemble_metrics(members)
    assert report["valid/auroc"] == pytest.approx(0.7) and report["valid/auroc_std"] == pytest.approx(0.1)
    assert report["train/loss"] == pytest.approx(2.0) and "train/loss_std" not in report
    assert report["fold1/valid/auroc"] == 0.6 and report["fold0/train/loss"] == 1.0
    assert math.isnan(ensemble_metrics({"a": {"valid/auroc": math.nan}, "b": {"valid/auroc": 0.5}})["valid/auroc"])


def test_the_majority_vote_breaks_ties_by_the_mean_probability():
    y = np.array([0, 1, 1])
    members = [
        np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]),
        np.array([[0.8, 0.2], [0.1, 0.9], [0.3, 0.7]]),
    ]
    # Row 1 ties 1-1; the mean probability (0.35, 0.65) gives class 1.
    scores = vote_metrics(y, members)
    assert scores == {"accuracy": 1.0, "f1_macro": 1.0}
    three = [*members, np.array([[0.1, 0.9], [0.7, 0.3], [0.6, 0.4]])]
    predicted = np.array([0, 0, 1])  # each row's majority
    assert vote_metrics(y, three) == {
        "accuracy": pytest.approx((predicted == y).mean()),
        "f1_macro": pytest.approx(f1_score(y, predicted, average="macro")),
    }


def test_members_in_one_process_train_as_each_would_alone(cv_job):
    together = LocalContext(root_seed=cv_job.root_seed)
    train_ensemble(cv_job, together, local_pool(cv_job))
    assert [r["epoch"] for r in together.reports] == [1, 2, 3]
    for member in cv_job.members:
        alone = LocalContext(root_seed=cv_job.root_seed)
        train_solver(cv_job.for_member(member), alone)
        for epoch, (mine, theirs) in enumerate(zip(together.reports, alone.reports)):
            for key in ("valid/auroc", "valid/loss", "train/loss"):
                assert mine[f"{member.label}/{key}"] == pytest.approx(theirs[key], rel=1e-6, abs=1e-9), (member, epoch, key)
    first = together.reports[0]
    per_fold = [first[f"fold{k}/valid/auroc"] for k in range(FOLDS)]
    assert first["valid/auroc"] == pytest.approx(np.mean(per_fold))
    assert first["valid/auroc_std"] == pytest.approx(np.std(per_fold))
    assert first["seeds"] == ",".join(f"fold{k}:3" for k in range(FOLDS))


def test_a_resumed_ensemble_goes_on_from_every_members_state(cv_job):
    whole = LocalContext(root_seed=cv_job.root_seed)
    train_ensemble(cv_job, whole, local_pool(cv_job))

    first_part = LocalContext(root_seed=cv_job.root_seed)
    shorter = cv_job.with_trial_params({"lr": 3e-3, "epochs": 2})
    train_ensemble(shorter, first_part, local_pool(shorter))
    assert set(first_part.last_checkpoint["members"]) == {f"fold{k}" for k in range(FOLDS)}
    resumed = LocalContext(root_seed=cv_job.root_seed, last_checkpoint=first_part.last_checkpoint)
    train_ensemble(cv_job, resumed, local_pool(cv_job))

    assert [r["epoch"] for r in resumed.reports] == [3]
    for key, value in whole.reports[-1].items():
        if isinstance(value, float):
            assert resumed.reports[-1][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_the_ensemble_is_evaluated_out_of_fold_on_valid_and_by_mean_probability_on_test(cv_job):
    context = LocalContext(root_seed=cv_job.root_seed)
    train_ensemble(cv_job, context, local_pool(cv_job))
    weights = context.last_checkpoint["best_members"]
    evaluation = evaluate_best(cv_job, weights)

    frame = cv_job.data.frame()
    held_out, proba = evaluation.predictions["valid"]
    assert sorted(held_out.rows) == sorted(np.flatnonzero(frame["split"] != "test"))
    assert "train" not in evaluation.predictions  # every fold trained on other rows
    test, test_proba = evaluation.predictions["test"]
    members = [evaluation.member_predictions[f"fold{k}"][1] for k in range(FOLDS)]
    assert np.allclose(test_proba, np.mean(members, axis=0))
    metrics = evaluation.metrics
    assert metrics["test/auroc"] == pytest.approx(roc_auc_score(test.y, test_proba[:, 1]))
    for k in range(FOLDS):
        assert metrics[f"test/fold{k}/auroc"] == pytest.approx(roc_auc_score(test.y, members[k][:, 1]))
    # valid/<m> is what the search ranked: the mean of the members' own valid metrics.
    best_epoch = max(context.reports, key=lambda r: r["valid/auroc"])
    assert metrics["valid/auroc"] == pytest.approx(best_epoch["valid/auroc"], rel=1e-6)
    assert metrics["valid/auroc_std"] == pytest.approx(best_epoch["valid/auroc_std"], rel=1e-6, abs=1e-9)
    for k in range(FOLDS):  # each member on the rows it held out, as it reported them at that epoch
        assert metrics[f"valid/fold{k}/auroc"] == pytest.approx(best_epoch[f"fold{k}/valid/auroc"], rel=1e-6)
    assert set(metrics) >= {"test/vote/accuracy", "test/vote/f1_macro"}


def test_repeats_train_the_same_split_with_derived_seeds(tmp_path):
    config = resolve(raw_config(tmp_path, repeats=2) | {"data": {**raw_config(tmp_path)["data"], "split": {"valid": 0.2, "test": 0.2}}})
    job = sweep_job(config, prepare_data(config)).with_trial_params({"lr": 3e-3, "epochs": 1})
    assert job.members == (Member(None, 0), Member(None, 1))
    context = LocalContext(root_seed=job.root_seed)
    train_ensemble(job, context, local_pool(job))
    report = context.reports[0]
    assert report["seeds"] == f"seed0:3,seed1:{repeat_seed(3, 1)}"
    assert report["seed0/valid/loss"] != report["seed1/valid/loss"]
    valid = open_split(job.data, "valid")
    evaluation = evaluate_best(job, context.last_checkpoint["best_members"])
    assert list(evaluation.predictions) == ["train", "valid", "test"]
    assert sorted(evaluation.predictions["valid"][0].rows) == sorted(valid.rows)


def test_a_searched_seed_is_the_trials_root_seed(cv_job):
    job = cv_job.with_trial_params({"lr": 3e-3, "seed": 11})
    assert job.root_seed == 11 and job.params.lr == 3e-3
    assert {job.for_member(member).root_seed for member in job.members} == {11}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"split": {"valid": 0.2, "test": 0.2}}, "search": {"cv": True}}, "search.cv: trains every fold of a k-fold split"),
        ({"data": {"split": {"folds": 3, "fold": 1, "test": 0.2}}, "search": {"cv": True}}, "data.split.fold: with search.cv every fold is trained"),
        ({"search": {"cv": True}, "scaling": {"num_workers": 2}}, "search.cv: each fold or seed model trains in one process"),
        ({"search": {"repeats": 2}, "scaling": {"num_workers": 2}}, "search.repeats: each fold or seed model trains in one process"),
        ({"search": {"repeats": 0}}, "search.repeats"),
        ({"search": {"space": {"seed": {"type": "uniform", "low": 0, "high": 9}}}}, "search.space.seed: the trial's root seed takes whole numbers"),
        ({"search": {"space": {"seed": {"type": "choice", "values": [1, "two"]}}}}, "search.space.seed: the trial's root seed takes whole numbers"),
    ],
)
def test_ensemble_settings_that_cannot_work_are_one_config_error(tmp_path, change, message):
    raw = raw_config(tmp_path)
    for section, values in change.items():
        raw[section] = {**raw.get(section, {}), **values}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        resolve(raw)


def test_a_searched_seed_is_accepted(tmp_path):
    raw = raw_config(tmp_path, repeats=2)
    raw["search"]["space"] = {"seed": {"type": "int", "low": 0, "high": 100}, "lr": raw["search"]["space"]["lr"]}
    assert set(resolve(raw).search.space) == {"seed", "lr"}


def test_fine_tuning_from_an_ensemble_checkpoint_asks_for_one_members_file(cv_job, tmp_path):
    context = LocalContext(root_seed=cv_job.root_seed)
    shorter = cv_job.with_trial_params({"lr": 3e-3, "epochs": 1})
    train_ensemble(shorter, context, local_pool(shorter))
    save_state(context.last_checkpoint, tmp_path)
    with pytest.raises(ConfigError, match=r"ensemble trial's checkpoint \(members fold0, fold1, fold2\); name one member's"):
        read_weights(str(tmp_path))


@pytest.mark.parametrize(
    ("search", "cpus", "expected"),
    [
        ({"cv": True, "num_samples": 6, "max_concurrent": 2}, 2, 1),  # two trials, each its folds in turn
        ({"cv": True, "num_samples": 6, "max_concurrent": 1}, 2, 2),
        ({"cv": True, "num_samples": 1, "max_concurrent": 2}, 2, 2),  # one trial gets both CPUs
        ({"cv": True, "num_samples": 4, "max_concurrent": 2}, 16, 3),  # never more than its 3 folds
        ({"repeats": 2, "num_samples": 4, "max_concurrent": 1}, 8, 2),
        ({"num_samples": 4, "max_concurrent": 1}, 8, 1),  # one model per trial
    ],
)
def test_members_train_side_by_side_on_the_cpus_left_to_each_trial(tmp_path, search, cpus, expected):
    raw = raw_config(tmp_path, **search)
    if not search.get("cv"):
        raw["data"]["split"] = {"valid": 0.2, "test": 0.2}
    assert members_in_parallel(resolve(raw), cpus) == expected


@pytest.mark.parametrize(
    ("search", "cpus", "expected", "warns"),
    [
        ({"cv": True, "num_samples": 1, "max_concurrent": 2}, 2, 1, False),  # one trial: nothing was lowered
        ({"cv": True, "num_samples": 6, "max_concurrent": 2}, 2, 2, False),  # folds in turn, 2 trials fit
        ({"cv": True, "num_samples": 6, "max_concurrent": 4}, 2, 2, True),
    ],
)
def test_max_concurrent_is_lowered_with_a_warning_only_when_trials_would_wait(tmp_path, search, cpus, expected, warns):
    config = resolve(raw_config(tmp_path, **search))
    parallel = members_in_parallel(config, cpus)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert concurrency_cap(config, cpus, parallel) == expected
    lowered = [str(w.message) for w in caught if "lowered to" in str(w.message)]
    assert bool(lowered) == warns, lowered
