"""A trial that fails at run time ends FAILED with its error; nothing is left RUNNING."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from trial.config import resolve
from trial.errors import SweepFailed
from trial.tune_glue import run_sweep

pytestmark = pytest.mark.integration


def test_failed_trials_end_failed_with_their_error(ray_cluster, tiny_config_data):
    raw = tiny_config_data
    # Valid for the solver, but no split of 240 recordings holds one batch of 100000.
    raw["search"]["space"] = {"batch_size": {"type": "choice", "values": [100000]}}
    raw["search"]["num_samples"] = 1
    raw["scaling"] = {"max_failures": 0}  # a retry would fail the same way
    config = resolve(raw)

    with pytest.raises(SweepFailed, match=r"all 1 trials failed; the first \(\w+\): .*100000"):
        run_sweep(config, verbose=0)

    client = MlflowClient(config.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    statuses = {r.data.tags["trial.role"]: r.info.status for r in runs}
    assert statuses == {"sweep": "FAILED", "trial": "FAILED"}
    child = next(r for r in runs if r.data.tags["trial.role"] == "trial")
    assert "100000" in child.data.tags["trial.error"]
    assert child.data.tags["trial.status"] == "error"
