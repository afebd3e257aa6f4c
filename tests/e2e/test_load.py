"""Load: 50 tiny trials at concurrency 2 end with 50 child runs, leave no process behind
and write nothing outside the working directory's stores."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRIALS = 50


def ray_pids() -> set[int]:
    """Processes of any Ray instance on this machine (raylet, gcs_server, workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"raylet" in command or b"gcs_server" in command or command.startswith(b"ray::"):
                found.add(int(entry.name))
    return found


def test_fifty_tiny_trials(tmp_path):
    config = {
        "name": "load",
        "data": {"dataset": "demo_ecg", "dataset_params": {"n_recordings": 120, "length": 256}},
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": 1, "batch_size": 32, "channels": 4}},
        "search": {
            "metric": "valid/loss",
            "num_samples": TRIALS,
            "max_concurrent": 2,
            "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}},
        },
    }
    (tmp_path / "load.yaml").write_text(yaml.safe_dump(config))
    before = ray_pids()
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), "--config", "load.yaml", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("load").experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags.get("trial.role") == "trial"]
    assert len(children) == TRIALS and len(runs) == TRIALS + 1
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["trial.trial_id"] for r in children}) == TRIALS

    # Ray's helper processes of the finished sweep go away (some linger briefly).
    deadline = time.monotonic() + 120
    while (leaked := ray_pids() - before) and time.monotonic() < deadline:
        time.sleep(2)
    assert not leaked, f"processes left behind: {sorted(leaked)}"
    # Everything the sweep wrote is in the stores it names.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "load.yaml", "mlflow.db", "mlruns", "optuna.db", "trial_runs"]
    trial_dirs = [p for p in (tmp_path / "trial_runs" / "load").iterdir() if p.is_dir()]
    assert len(trial_dirs) == TRIALS
