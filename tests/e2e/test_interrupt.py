"""Ctrl-C stops a sweep cleanly: exit 130, every run KILLED or finished, none RUNNING."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def test_sigint_marks_runs_killed_and_exits_130(tmp_path, tiny_config_data):
    config = tiny_config_data
    config["solver"]["params"]["epochs"] = 30
    config["search"]["num_samples"] = 4
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), "--config", "long.yaml", "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    client = MlflowClient(config["tracking"]["uri"])
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            experiment = client.get_experiment_by_name("tiny") if (tmp_path / "mlflow.db").exists() else None
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if any(r.data.tags.get("trial.role") == "trial" and r.data.metrics for r in runs):
                break
            time.sleep(1)
        assert process.poll() is None, "the sweep ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130, stderr[-2000:]
    assert "trial: interrupted after" in stderr
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    statuses = {r.data.tags["trial.role"]: set() for r in runs}
    for run in runs:
        statuses[run.data.tags["trial.role"]].add(run.info.status)
    assert statuses["sweep"] == {"KILLED"}
    assert "RUNNING" not in statuses["trial"] and "KILLED" in statuses["trial"]
