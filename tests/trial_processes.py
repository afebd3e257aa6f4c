"""Watching and killing a running sweep's trial processes, as a crash or the OOM killer would."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any


def results(experiment: Path) -> list[dict]:
    """Every result Tune wrote for the sweep's one trial (each carries the trial process's pid)."""
    # Only whole lines: Tune may be writing the last one.
    lines = [line for path in experiment.glob("*/result.json") for line in path.read_text().split("\n")[:-1]]
    return [json.loads(line) for line in lines]


def kill_trial_process(experiment: Path, at_epoch: int, killed: list[int]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        reported = [r for r in results(experiment) if r["epoch"] >= at_epoch]
        if reported:
            os.kill(reported[0]["pid"], signal.SIGKILL)
            killed.append(reported[0]["pid"])
            return
        time.sleep(0.05)


def sweep_killed_once(config: Any, at_epoch: int) -> tuple[Any, list[int], list[dict]]:
    """Run `config`'s one-trial sweep while its trial process is SIGKILLed once it has
    reported `at_epoch`: the outcome, the killed pids, and the results the restarted
    process(es) reported."""
    from trial.sweep import run_sweep

    experiment = config.storage_path / config.name
    killed: list[int] = []
    killer = threading.Thread(target=kill_trial_process, args=(experiment, at_epoch, killed), daemon=True)
    killer.start()
    outcome = run_sweep(config, verbose=0)
    killer.join()
    restarted = [r for r in results(experiment) if r["pid"] not in killed]
    return outcome, killed, restarted


def only_child_run(client: Any, experiment: str, parent_run_id: str) -> Any:
    """The one child run of a one-trial sweep."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    assert len(children) == 1
    return children[0]
