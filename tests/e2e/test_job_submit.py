"""`ray job submit`, end to end: the README's cluster command against a real head with token auth.

The head (scripts/local-cluster.sh, no extra node) runs on ports the OS picked free, never
a user's 6379/8265. The job gets the project as its working dir (uploaded, .gitignore
respected); the config and the MLflow store live in tmp_path, given by absolute path since
the job runs on this same machine.
"""
from __future__ import annotations

import secrets
import subprocess

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT
from tests.local_cluster import RAY, local_cluster

pytestmark = pytest.mark.e2e


def test_submitted_job_runs_the_sweep_into_mlflow(tmp_path):
    config = {
        "name": "job",
        "seed": 3,
        "data": {"dataset": "demo_ecg", "dataset_params": {"n_recordings": 240}, "root": str(tmp_path / "data")},
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": 1, "batch_size": 32, "channels": 8}},
        "search": {
            "metric": "valid/auroc",
            "num_samples": 2,
            "max_concurrent": 2,
            "scheduler": {"type": "none"},
            "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}},
        },
        "tracking": {"experiment": "job"},
    }
    config_path = tmp_path / "job.yaml"
    config_path.write_text(yaml.safe_dump(config))
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job_id = f"trial-e2e-{secrets.token_hex(4)}"

    with local_cluster(extra_nodes=0, cpus_per_node=2) as cluster:
        # Token auth is on: the job API turns away a client with another token.
        intruder = subprocess.run(
            [RAY, "job", "list", "--address", cluster.dashboard_url],
            env={**cluster.env, "RAY_AUTH_TOKEN": "0" * 64},
            capture_output=True, text=True, check=False, timeout=60,
        )
        assert intruder.returncode != 0 and "token" in intruder.stdout + intruder.stderr
        submit = subprocess.run(
            [RAY, "job", "submit", "--address", cluster.dashboard_url, "--submission-id", job_id,
             "--working-dir", str(PROJECT_ROOT), "--",
             "python", "trial/run.py", "--config", str(config_path), "--quiet",
             "--set", f"tracking.uri={tracking_uri}"],
            cwd=tmp_path, env=cluster.env, capture_output=True, text=True, check=False, timeout=540,
        )
        status = subprocess.run(
            [RAY, "job", "status", "--address", cluster.dashboard_url, job_id],
            env=cluster.env, capture_output=True, text=True, check=False, timeout=60,
        )
    output = submit.stdout + submit.stderr
    assert submit.returncode == 0, output[-4000:]
    assert f"Job '{job_id}' succeeded" in output
    assert "Sweep 'job': 2 trials" in output  # the driver's summary, tailed from the job's logs
    # `ray job status` asks the job API again, after the submit's log tail ended.
    assert status.returncode == 0 and f"Job '{job_id}' succeeded" in status.stdout + status.stderr

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("job").experiment_id])
    parents = [run for run in runs if run.data.tags.get("trial.role") == "sweep"]
    children = [run for run in runs if run.data.tags.get("trial.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert all(child.info.status == "FINISHED" for child in children)
    assert all(child.data.tags["mlflow.parentRunId"] == parent.info.run_id for child in children)
    assert parent.data.tags["trial.best_trial_id"] in {child.data.tags["trial.trial_id"] for child in children}
    assert (tmp_path / "trial_runs" / "job").is_dir()  # Tune's storage beside the MLflow store
