"""The per-worker loop without Ray: reporting, checkpoint resume, early stopping."""
from __future__ import annotations

import math

import pytest
import torch

from trial.config import resolve
from trial.context import LocalContext
from trial.data import prepare_data
from trial.tune_glue import sweep_job
from trial.worker import train_solver


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("worker")
    config = resolve(
        {
            "name": "w",
            "seed": 3,
            "data": {"dataset": "demo_ecg", "dataset_params": {"n_recordings": 160, "length": 256}, "root": str(root / "data")},
            "solver": {"name": "ecg_cnn1d", "params": {"epochs": 4, "batch_size": 16, "channels": 8, "dropout": 0.3}},
            "search": {"metric": "valid/loss", "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
            "storage": str(root / "runs"),
        }
    )
    return sweep_job(config, prepare_data(config)).with_trial_params({"lr": 3e-3})


def test_reports_every_epoch_with_seeds_and_a_checkpoint(job):
    context = LocalContext(root_seed=job.root_seed)
    train_solver(job, context)
    assert [r["epoch"] for r in context.reports] == [1, 2, 3, 4]
    assert all(math.isfinite(r["valid/loss"]) and math.isfinite(r["train/loss"]) for r in context.reports)
    assert context.reports[0]["seeds"] == "0:3"
    assert context.last_checkpoint["epoch"] == 4 and "best_model" in context.last_checkpoint


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(job):
    whole = LocalContext(root_seed=job.root_seed)
    train_solver(job, whole)

    first_half = LocalContext(root_seed=job.root_seed)
    train_solver(job.with_trial_params({"epochs": 2}), first_half)
    resumed = LocalContext(root_seed=job.root_seed, last_checkpoint=first_half.last_checkpoint)
    train_solver(job, resumed)

    assert [r["epoch"] for r in resumed.reports] == [3, 4]
    for key in ("valid/loss", "train/loss", "valid/auroc"):
        assert resumed.reports[-1][key] == pytest.approx(whole.reports[-1][key], rel=1e-6, abs=1e-9)


def test_early_stopping_ends_the_trial_after_patience_epochs(job):
    # min_delta this large means no epoch ever counts as an improvement.
    context = LocalContext(root_seed=job.root_seed)
    train_solver(job.with_trial_params({"epochs": 10, "patience": 2, "min_delta": 100.0}), context)
    assert [r["epoch"] for r in context.reports] == [1, 2, 3]
    assert [r["early_stopped"] for r in context.reports] == [0, 0, 1]


@pytest.mark.parametrize("dataset, solver", [("breast_cancer", "tabular_mlp"), ("digits", "image_cnn")])
def test_unbalanced_builtin_datasets_train(tmp_path, dataset, solver):
    # No data.balance: the sampler shuffles plainly.
    config = resolve(
        {
            "name": dataset,
            "data": {"dataset": dataset, "root": str(tmp_path / "data")},
            "solver": {"name": solver, "params": {"epochs": 2, "batch_size": 64}},
            "search": {"metric": "valid/accuracy", "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
            "storage": str(tmp_path / "runs"),
        }
    )
    prepared = prepare_data(config)
    assert prepared.balance is None
    context = LocalContext(root_seed=0)
    train_solver(sweep_job(config, prepared).with_trial_params({"lr": 3e-3}), context)
    assert [r["epoch"] for r in context.reports] == [1, 2]
    assert context.reports[-1]["valid/accuracy"] > 0.5
