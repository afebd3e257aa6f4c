"""Ensemble trials through real Ray, Tune and MLflow: a cross-validated trial's folds
train side by side in Ray actors, and a killed trial resumes every fold where it was,
each epoch logged once; seed repeats (with a searched seed) train in the trial's own
process; the sweep's ensemble is the model `trial predict` uses."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.trial_processes import only_child_run, sweep_killed_once
from trial.config import resolve
from trial.data import open_split, prepare_data
from trial.model import load_predictor
from trial.runs import member_probability_artifact
from trial.sweep import run_sweep

pytestmark = pytest.mark.integration

EPOCHS = 4
FOLDS = 3


def cv_config(raw: dict, name: str):
    raw = copy.deepcopy(raw)
    raw["name"] = name
    raw["data"]["split"] = {"folds": FOLDS, "test": 0.2}
    raw["solver"]["params"].update(epochs=EPOCHS, dropout=0.2)
    # One trial at a time on the 2 CPUs: its 3 folds train on 2 actors side by side.
    raw["search"].update(cv=True, num_samples=1, max_concurrent=1, space={"lr": {"type": "choice", "values": [0.003]}})
    return resolve(raw)


def history(client: MlflowClient, run_id: str, metric: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, metric)]


def downloaded(client: MlflowClient, run_id: str, path: str, folder) -> pd.DataFrame:
    # MLflow downloads a file as folder/<its name>: files of the same name need their own folders.
    folder.mkdir(parents=True, exist_ok=True)
    return pd.read_csv(client.download_artifacts(run_id, path, str(folder)))


def test_a_killed_cv_trial_resumes_every_fold_and_ends_as_an_uninterrupted_one(ray_cluster, tiny_config_data):
    config = cv_config(tiny_config_data, "cv-killed")
    outcome, killed, restarted = sweep_killed_once(config, at_epoch=2)
    reference = run_sweep(cv_config(tiny_config_data, "cv-reference"), verbose=0)

    assert killed, "the trial finished before its process could be killed"
    assert restarted and min(r["epoch"] for r in restarted) > 1  # from a checkpoint, not from epoch 1

    client = MlflowClient(config.tracking_uri)
    run, reference_run = only_child_run(client, "tiny", outcome.parent_run_id), only_child_run(client, "tiny", reference.parent_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["seeds"] == "fold0:42,fold1:42,fold2:42"
    for metric in ("valid/auroc", "valid/auroc_std", "train/loss", *(f"fold{k}/valid/loss" for k in range(FOLDS))):
        logged = history(client, run.info.run_id, metric)
        assert [step for step, _ in logged] == list(range(1, EPOCHS + 1)), metric  # each epoch once
        expected = history(client, reference_run.info.run_id, metric)
        assert [value for _, value in logged] == pytest.approx([value for _, value in expected], abs=1e-6), metric
    # What Tune (and ASHA) received each epoch is the mean over the folds.
    folds = [dict(history(client, run.info.run_id, f"fold{k}/valid/auroc")) for k in range(FOLDS)]
    for step, value in history(client, run.info.run_id, "valid/auroc"):
        assert value == pytest.approx(np.mean([fold[step] for fold in folds]))

    # The parent: the ensemble on test, each fold's, the vote; one weights file per fold.
    parent = client.get_run(outcome.parent_run_id)
    assert parent.data.tags["trial.members"] == "fold0,fold1,fold2"
    assert outcome.test_metrics == pytest.approx(reference.test_metrics, abs=1e-6)
    assert {f"test/fold{k}/auroc" for k in range(FOLDS)} | {"test/vote/accuracy"} <= set(parent.data.metrics)
    experiment = config.storage_path / config.name
    trial_folder = next(path for path in experiment.iterdir() if path.is_dir() and list(path.glob("*.pt")))
    assert sorted(path.name.split("-")[2] for path in trial_folder.glob("*.pt")) == ["fold0", "fold1", "fold2"]

    # The logged model is the 3-fold ensemble: on the test rows it gives the parent's test metrics.
    predictor, _ = load_predictor(outcome.model_uri, config.tracking_uri, config.storage_path / "predictor")
    assert len(predictor.models) == FOLDS
    logged_test = downloaded(client, outcome.parent_run_id, "predictions/test_probability.csv", config.storage_path / "ensemble")
    fold1 = downloaded(client, outcome.parent_run_id, member_probability_artifact("fold1", "test"), config.storage_path / "fold1")
    test = open_split(prepare_data(config), "test")  # the cached manifest and packed array
    assert list(test.rows) == list(logged_test["row"])
    x = np.asarray(test.x[test.rows], dtype=np.float32)
    ensemble = predictor.predict_proba(x)
    assert np.allclose(ensemble, logged_test[["proba_0", "proba_1"]].to_numpy(), atol=1e-5)
    assert not np.allclose(fold1[["proba_0", "proba_1"]].to_numpy(), ensemble, atol=1e-5)


def test_seed_repeats_train_in_the_trials_process_with_a_searched_seed(ray_cluster, tiny_config_data):
    raw = copy.deepcopy(tiny_config_data)
    raw["name"] = "repeats"
    raw["solver"]["params"]["epochs"] = 2
    raw["search"].update(
        repeats=2, num_samples=2, space={"seed": {"type": "choice", "values": [5, 6]}, "lr": {"type": "choice", "values": [0.003]}}
    )
    config = resolve(raw)
    outcome = run_sweep(config, verbose=0)

    client = MlflowClient(config.tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    children = client.search_runs([experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'")
    assert len(children) == 2
    for child in children:
        seed = int(child.data.params["seed"])
        assert child.data.tags["seeds"].startswith(f"seed0:{seed},seed1:")
        assert set(child.data.metrics) >= {"valid/auroc", "valid/auroc_std", "seed0/valid/auroc", "seed1/valid/auroc"}
    assert outcome.members == ("seed0", "seed1")
    parent = client.get_run(outcome.parent_run_id)
    assert {"test/seed0/auroc", "test/seed1/auroc", "test/vote/f1_macro"} <= set(parent.data.metrics)
