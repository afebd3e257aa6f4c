"""A trial whose worker process is killed restarts from its last checkpoint and ends
exactly as an uninterrupted trial with the same seed, in one child run, each epoch once."""
from __future__ import annotations

import copy

import pytest
import ray
from mlflow.tracking import MlflowClient

from tests.trial_processes import only_child_run, sweep_killed_once
from trial.config import resolve
from trial.sweep import run_sweep

pytestmark = pytest.mark.integration

EPOCHS = 6


def one_trial(raw: dict, name: str):
    raw = copy.deepcopy(raw)
    raw["name"] = name
    raw["solver"]["params"]["epochs"] = EPOCHS
    # One fixed value: both sweeps train the very same trial.
    raw["search"].update(num_samples=1, max_concurrent=1, space={"lr": {"type": "choice", "values": [0.003]}})
    return resolve(raw)


def test_killed_worker_restarts_from_checkpoint_with_the_same_result(ray_cluster, tiny_config_data):
    config = one_trial(tiny_config_data, "killed")
    outcome, killed, restarted = sweep_killed_once(config, at_epoch=2)
    reference = run_sweep(one_trial(tiny_config_data, "reference"), verbose=0)

    assert killed, "the trial finished before its process could be killed"
    # Tune started a new process, which went on from a checkpoint, not from epoch 1.
    assert restarted and min(r["epoch"] for r in restarted) > 1
    assert max(r["epoch"] for r in restarted) == EPOCHS

    client = MlflowClient(config.tracking_uri)
    run, reference_run = only_child_run(client, "tiny", outcome.parent_run_id), only_child_run(client, "tiny", reference.parent_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["trial.status"] == "completed"
    # A single-worker trial runs in the trial's own process: its tags name this Ray node.
    assert run.data.tags["nodes"] == f"0:{ray.get_runtime_context().get_node_id()}"
    for metric in ("train/loss", "valid/loss", "valid/auroc"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert [m.step for m in history] == list(range(1, EPOCHS + 1)), metric
        expected = client.get_metric_history(reference_run.info.run_id, metric)
        assert [m.value for m in history] == pytest.approx([m.value for m in expected], abs=1e-6), metric
    assert outcome.valid_metrics == pytest.approx(reference.valid_metrics, abs=1e-6)
    assert outcome.test_metrics == pytest.approx(reference.test_metrics, abs=1e-6)
