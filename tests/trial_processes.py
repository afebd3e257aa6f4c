"""Watching and killing a running sweep's trial processes, as a crash or the OOM killer would."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path


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
