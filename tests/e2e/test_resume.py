"""A sweep whose driver is SIGKILLed goes on with `trial run --resume`: finished trials
stay as they were, the unfinished one restarts from its checkpoint, Optuna's history
goes on, and MLflow keeps one parent with one child per trial, each epoch logged once."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e

EPOCHS = 5
TRIALS = 4


def reported(experiment: Path) -> dict[str, list[dict]]:
    """Tune's results per trial id; each carries the epoch and the trial process's pid."""
    # Only whole lines: Tune may be writing the last one.
    return {
        path.parent.name: [json.loads(line) for line in path.read_text().split("\n")[:-1]]
        for path in experiment.glob("*/result.json")
    }


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def history(client: MlflowClient, run_id: str, metric: str) -> list[tuple[int, float, int]]:
    return [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, metric)]


def test_killed_driver_resumes_the_same_sweep(tmp_path, tiny_config_data):
    config = tiny_config_data
    config["solver"]["params"]["epochs"] = EPOCHS
    config["search"].update(num_samples=TRIALS, max_concurrent=1)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), "--config", "sweep.yaml", "--quiet"]
    experiment = tmp_path / "trial_runs" / "tiny"
    client = MlflowClient(config["tracking"]["uri"])

    # 1. Start the sweep; SIGKILL its driver once a trial finished and the next is mid-way.
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            epochs = {trial: results[-1]["epoch"] for trial, results in reported(experiment).items() if results}
            if EPOCHS in epochs.values() and any(2 <= epoch < EPOCHS for epoch in epochs.values()):
                break
            time.sleep(0.1)
        assert driver.poll() is None, "the sweep ended before its driver could be killed"
        finished = next(trial for trial, epoch in epochs.items() if epoch == EPOCHS)
        interrupted = next(trial for trial, epoch in epochs.items() if epoch < EPOCHS)
        trial_pid = reported(experiment)[interrupted][-1]["pid"]
        ray_processes = [*children_of(driver.pid), trial_pid]  # gcs_server, raylet, ... and the trial's worker
        runs = {r.data.tags["trial.trial_id"]: r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
                if r.data.tags.get("trial.role") == "trial"}
        finished_before = runs[finished]
        finished_history = {m: history(client, finished_before.info.run_id, m) for m in ("train/loss", "valid/auroc")}

        driver.kill()
        driver.wait()
        # The local Ray the driver started goes down with it (Ray ties its processes to the
        # driver's life); nothing of it is left to reuse or to stop.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(pid) for pid in ray_processes):
            time.sleep(0.5)
        assert not any(alive(pid) for pid in ray_processes)
    finally:
        # Only the test's own processes: the session started for the driver (Ray's agents
        # also end by themselves within a minute of their raylet).
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # 2. Resume it with the same command line.
    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Sweep 'tiny': {TRIALS} trials" in resumed.stdout

    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parents = [r for r in runs if r.data.tags["trial.role"] == "sweep"]
    children = [r for r in runs if r.data.tags["trial.role"] == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == TRIALS
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert len({c.data.tags["trial.trial_id"] for c in children}) == TRIALS
    assert all(c.info.status == "FINISHED" for c in children)
    for child in children:
        for metric in ("train/loss", "valid/auroc"):
            assert [step for step, _, _ in history(client, child.info.run_id, metric)] == list(range(1, EPOCHS + 1))

    # The finished trial was not run again: its run is as it was when the driver died.
    finished_after = next(c for c in children if c.data.tags["trial.trial_id"] == finished)
    assert finished_after.info.end_time == finished_before.info.end_time
    assert {m: history(client, finished_after.info.run_id, m) for m in finished_history} == finished_history

    # The interrupted trial went on in a new process from its checkpoint, not from epoch 1.
    restarted = [r["epoch"] for r in reported(experiment)[interrupted] if r["pid"] != trial_pid]
    assert restarted and min(restarted) > 1 and max(restarted) == EPOCHS

    # Optuna's study went on (ray-project/ray#30861 lost it): the searcher's saved state,
    # which Tune restores it from, holds every trial, the ones proposed before the kill included.
    newest = max(experiment.glob("searcher-state-*.pkl"))
    study = pickle.loads(newest.read_bytes())["_ot_study"]
    assert len(study.trials) == TRIALS
    assert {t.params["lr"] for t in study.trials} == {float(c.data.params["lr"]) for c in children}
    assert all(t.state.name == "COMPLETE" for t in study.trials)

    # 3. A finished sweep has nothing to resume: one line, exit code 2.
    again = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.strip() == f"trial: error: --resume: sweep 'tiny' already finished (parent run {parents[0].info.run_id})"
