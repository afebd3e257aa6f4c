"""A 2-worker trial runs as a real TorchTrainer worker group and records each rank's seed."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from trial.config import resolve
from trial.sweep import run_sweep

pytestmark = pytest.mark.integration


def test_two_worker_trial_records_distinct_rank_seeds(ray_cluster, tiny_config_data):
    raw = tiny_config_data
    raw["search"].update(num_samples=1, max_concurrent=1)
    raw["solver"]["params"]["epochs"] = 1
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
