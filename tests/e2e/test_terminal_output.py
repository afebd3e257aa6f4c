"""The terminal output of `trial run`: the sweep's own progress by default, on a real
pseudo-terminal (a live bar) and piped (plain lines); Tune's tables only with --verbose.
Real sweeps (local Ray, MLflow sqlite) of a small tabular solver."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.e2e.test_cli_sweep import run_cli

pytestmark = pytest.mark.e2e

TRIALS = 3
CONFIG = {
    "name": "progress",
    "seed": 1,
    "data": {"dataset": "breast_cancer", "split": {"valid": 0.2, "test": 0.2}},
    "solver": {"name": "tabular_mlp", "params": {"epochs": 3, "batch_size": 32, "patience": None}},
    "search": {
        "metric": "valid/auroc",
        "num_samples": TRIALS,
        "max_concurrent": 2,
        "scheduler": {"type": "none"},
        "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}},
    },
}
# What Ray and Tune print on their own: progress tables and boxes, per-checkpoint lines,
# the TensorBoard hint, INFO log lines.
RAY_NOISE = re.compile(r"Trial status:|[╭╰│]|Checkpoint successfully created|tensorboard|View detailed results| INFO ")
ENDED = re.compile(r"^trial \w+ completed after 3 epochs: valid/auroc 0\.\d{4} \(\d+\.\d s\)")
# 3/3 trials ended (0 pruned, 0 failed), 0 running | best valid/auroc 0.9876 lr=0.001234 | 0:12 elapsed
STATE = re.compile(
    r"(\d)/3 trials ended \(0 pruned, 0 failed\), (\d) running \| "
    r"best valid/auroc (\d\.\d{4}) lr=[\d.e-]+ \| \d+:\d\d elapsed"
)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(CONFIG))
    return tmp_path


def test_piped_output_is_one_line_per_trial_with_the_sweeps_state_and_no_tune_tables(workdir):
    result = run_cli(["--config", "sweep.yaml"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert not [line for line in lines if RAY_NOISE.search(line)], result.stdout
    assert "\r" not in result.stdout  # no bar redrawn into a log
    ended = [line for line in lines if ENDED.match(line)]
    assert len(ended) == TRIALS, result.stdout
    states = [STATE.search(line) for line in ended]
    assert all(states), ended
    # Each line counts one more ended trial; the last one leaves nothing running.
    assert [int(state.group(1)) for state in states] == [1, 2, 3]
    assert states[-1].group(2) == "0"
    best = float(states[-1].group(3))
    assert f"auroc {best:.4f}" in result.stdout.split("Best trial", 1)[1]  # the summary's best trial agrees
    assert "Best trial" in result.stdout and "Model:" in result.stdout
    # Everything on stdout is trial's own: the progress lines, then the summary.
    assert len(lines) < 30, result.stdout


def run_in_pty(args: list[str], cwd: Path, timeout: float = 600) -> tuple[int, str]:
    """`trial run` with a pseudo-terminal as its stdout and stderr, as in a user's shell."""
    main, child = pty.openpty()
    # A new pseudo-terminal is 0 x 0 until someone sizes it, as a terminal emulator does.
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), *args],
        cwd=cwd, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env, close_fds=True,
    )
    os.close(child)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # the child closed its end (EIO on Linux)
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(main)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_a_live_bar_shows_the_sweeps_state_between_trial_lines(workdir):
    returncode, output = run_in_pty(["--config", "sweep.yaml"], workdir)
    assert returncode == 0, output[-3000:]
    assert not RAY_NOISE.search(output), output
    # tqdm redraws its bar in place: carriage returns, the state as the bar's text.
    redraws = [part for part in output.split("\r") if STATE.search(part)]
    assert redraws, output
    assert any("0/3 trials ended" in part for part in redraws), output  # live before any trial ended
    assert "3/3 trials ended" in output
    # The ended trials' lines are whole lines of their own, above the bar.
    ended = [line for line in output.replace("\r", "\n").splitlines() if ENDED.match(line.strip())]
    assert len(ended) == TRIALS, output
    assert "Best trial" in output


def test_verbose_brings_back_tunes_tables_and_ray_logs(workdir):
    result = run_cli(["--config", "sweep.yaml", "--verbose"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "Trial status:" in out  # Tune's progress table
    assert "Checkpoint successfully created" in out  # Ray's INFO lines from the trials
    assert len([line for line in result.stdout.splitlines() if ENDED.match(line)]) == TRIALS


def test_quiet_prints_warnings_and_the_summary_only(workdir):
    result = run_cli(["--config", "sweep.yaml", "--quiet", "--set", "search.scheduler={type: asha, grace_period: 5}"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [line for line in result.stdout.splitlines() if line.startswith("trial ")], result.stdout
    assert not RAY_NOISE.search(result.stdout), result.stdout
    # A warning is never hidden: the grace period lowered to the 3 epochs a trial runs.
    assert "trial: warning: search.scheduler.grace_period=5 lowered to 3" in result.stderr
    assert "Best trial" in result.stdout
