"""A 2-worker trial runs as a real TorchTrainer worker group, records each rank's seed,
keeps only its latest and best checkpoints and leaves its best weights as a named file."""
from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from trial.config import resolve
from trial.context import load_state
from trial.sweep import run_sweep

pytestmark = pytest.mark.integration


def test_two_worker_trial_records_distinct_rank_seeds(ray_cluster, tiny_config_data):
    raw = tiny_config_data
    raw["search"].update(num_samples=1, max_concurrent=1)
    # Three epochs: Ray would keep three checkpoint folders, where trial keeps at most two.
    raw["solver"]["params"]["epochs"] = 3
    raw["scaling"] = {"num_workers": 2, "cpus_per_worker": 1}
    config = resolve(raw)

    outcome = run_sweep(config, verbose=0)

    client = MlflowClient(config.tracking_uri)
    child = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'",
    )
    assert len(child) == 1
    run = child[0]
    assert run.info.status == "FINISHED"
    # Gathered from the workers themselves (all_gather), not computed by the driver.
    assert run.data.tags["seeds"] == "0:42,1:1043"
    ranks = [part.split(":")[0] for part in run.data.tags["nodes"].split(",")]
    assert ranks == ["0", "1"]
    assert run.data.params["scaling.num_workers"] == "2"
    assert "valid/auroc" in run.data.metrics

    # The TorchTrainer's own storage folder, RunConfig(name=<trial id>, storage_path=storage),
    # keeps the latest checkpoint (to resume from) and the best one, never one per epoch.
    trial_id = run.data.tags["trial.trial_id"]
    # (checkpoint_manager_snapshot.json, the checkpoint manager's state, is no checkpoint)
    checkpoints = [path for path in (config.storage_path / trial_id).glob("checkpoint_*") if path.is_dir()]
    assert len(checkpoints) <= 2, checkpoints
    history = MlflowClient(config.tracking_uri).get_metric_history(run.info.run_id, "valid/auroc")
    assert [m.step for m in history] == [1, 2, 3]
    best = max(m.value for m in history)
    best_epoch = max(m.step for m in history if m.value == best)  # Ray ranks a tie's later epoch higher
    assert sorted(load_state(path)["epoch"] for path in checkpoints) == sorted({best_epoch, 3})
    # Its best weights, found through the checkpoint_path metric, beside Tune's trial files.
    (weights,) = (config.storage_path / config.name / trial_id).glob("*.pt")
    assert weights.name == f"ecg_cnn1d-{trial_id}-valid_auroc={best:.4f}.pt"
    model = config.solver.cls(config.solver.params).build_model((3, 1000), 2)  # demo_ecg: 3 leads, 2 classes
    model.load_state_dict(torch.load(weights, weights_only=True))


def test_ray_train_settings_reach_the_workers_and_the_users_own_win(ray_cluster, monkeypatch):
    import os

    from trial.ray_backend import RAY_TRAIN_SETTINGS, RAY_TRAIN_SETTINGS_LOCAL, _users_first

    settings = {**RAY_TRAIN_SETTINGS, **RAY_TRAIN_SETTINGS_LOCAL}

    @ray_cluster.remote
    def environment() -> dict:
        return {name: os.environ.get(name) for name in settings}

    # Through the job's runtime_env: every Ray worker (a Train controller, its workers) has them.
    assert ray_cluster.get(environment.remote()) == settings
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")
    assert _users_first(RAY_TRAIN_SETTINGS) == {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "3"}
