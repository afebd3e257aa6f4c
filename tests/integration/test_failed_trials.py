"""A trial that fails at run time ends FAILED with its error; nothing is left RUNNING."""
from __future__ import annotations

import threading

import pytest
from mlflow.tracking import MlflowClient

from tests.trial_processes import kill_trial_process
from trial.config import resolve
from trial.errors import SweepFailed
from trial.sweep import run_sweep

pytestmark = pytest.mark.integration


def test_failed_trials_end_failed_with_their_error(ray_cluster, tiny_config_data):
    raw = tiny_config_data
    # A process that dies mid-trial (the OOM killer, a crash in native code) is a failure
    # no pre-flight can foresee; without retries it ends the trial.
    raw["solver"]["params"]["epochs"] = 6
    raw["search"]["space"] = {"lr": {"type": "choice", "values": [0.003]}}
    raw["search"]["num_samples"] = 1
    raw["scaling"] = {"max_failures": 0}
    config = resolve(raw)
    killed: list[int] = []
    killer = threading.Thread(target=kill_trial_process, args=(config.storage_path / config.name, 1, killed), daemon=True)
    killer.start()

    with pytest.raises(SweepFailed, match=r"all 1 trials failed; the first \(\w+\): "):
        run_sweep(config, verbose=0)
    killer.join()
    assert killed, "the trial finished before its process could be killed"

    client = MlflowClient(config.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    statuses = {r.data.tags["trial.role"]: r.info.status for r in runs}
    assert statuses == {"sweep": "FAILED", "trial": "FAILED"}
    child = next(r for r in runs if r.data.tags["trial.role"] == "trial")
    assert child.data.tags["trial.status"] == "error"
    assert "died" in child.data.tags["trial.error"].lower(), child.data.tags["trial.error"]


def test_a_trial_larger_than_the_local_cluster_is_refused(ray_cluster, tiny_config_data):
    from trial.errors import ConfigError
    from trial.ray_backend import check_cluster_fits

    # Nothing joins a local Ray: such a trial would wait forever.
    raw = {**tiny_config_data, "scaling": {"num_workers": 2, "cpus_per_worker": 2}}
    with pytest.raises(ConfigError, match=r"scaling.num_workers x scaling.cpus_per_worker: each trial needs 4 CPUs and the Ray cluster has 2"):
        check_cluster_fits(resolve(raw), local=True)
    with pytest.warns(UserWarning, match="trials wait until the cluster has them"):
        check_cluster_fits(resolve(raw), local=False)
    gpu = {**tiny_config_data, "scaling": {"use_gpu": True}}
    with pytest.raises(ConfigError, match=r"scaling.use_gpu with scaling.num_workers: each trial needs 1 GPUs"):
        check_cluster_fits(resolve(gpu), local=True)
    check_cluster_fits(resolve(tiny_config_data), local=True)
