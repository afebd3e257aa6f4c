"""Multi-node on one machine: a 2-worker trial spreads over a head and a second Ray node.

Two `ray start` nodes of one CPU each (scripts/local-cluster.sh, token auth on) stand in
for two machines; this machine's filesystem stands in for the shared storage a real
cluster needs. TorchTrainer packs its workers (PACK), so only one CPU per node makes it
place one worker on each: the child run's `nodes` tag, gathered from the workers
themselves, must name both nodes.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT
from tests.local_cluster import local_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_worker_trial_runs_one_worker_on_each_node(tmp_path, tiny_config_data):
    raw = tiny_config_data
    raw["search"].update(num_samples=2, max_concurrent=1)
    raw["solver"]["params"]["epochs"] = 1
    raw["scaling"] = {"num_workers": 2, "cpus_per_worker": 1}
    raw["storage"] = str(tmp_path / "shared")  # what would be a path every machine mounts
    config_path = tmp_path / "multinode.yaml"
    config_path.write_text(yaml.safe_dump(raw))

    with local_cluster(extra_nodes=1, cpus_per_node=1) as cluster:
        node_ids = cluster.node_ids()
        assert len(node_ids) == 2, node_ids
        result = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), "--address", cluster.address,
             "--config", str(config_path), "--quiet"],
            cwd=tmp_path, env=cluster.env, capture_output=True, text=True, check=False, timeout=420,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parents = [run for run in runs if run.data.tags.get("trial.role") == "sweep"]
    children = [run for run in runs if run.data.tags.get("trial.role") == "trial"]
    # Two trials: the second must start its own worker group after the first's shut down.
    assert len(parents) == 1 and len(children) == 2
    assert parents[0].info.status == "FINISHED"
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.data.tags["seeds"] == "0:42,1:1043"
        # rank -> node id, as each worker saw its own node.
        nodes = dict(part.split(":", 1) for part in child.data.tags["nodes"].split(","))
        assert sorted(nodes) == ["0", "1"]
        assert nodes["0"] != nodes["1"], child.data.tags["nodes"]
        assert set(nodes.values()) == node_ids
    assert (tmp_path / "shared" / "tiny").is_dir()  # Tune's state in the given storage
