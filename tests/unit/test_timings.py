"""trial.timings: spans written only when TRIAL_TIMINGS names a file."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import PROJECT_ROOT
from trial import timings


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_nothing_is_written_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(timings.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with timings.span("x"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_span_records_its_duration_also_when_the_block_raises(tmp_path, monkeypatch):
    path = tmp_path / "t.jsonl"
    monkeypatch.setenv(timings.ENV, str(path))

    @timings.timed("called")
    def work() -> int:
        time.sleep(0.05)
        return 3

    assert work() == 3
    with pytest.raises(ValueError), timings.span("failed"):
        raise ValueError
    lines = read(path)
    assert [line["span"] for line in lines] == ["called", "failed"]
    assert 0.05 <= lines[0]["seconds"] < 1.0
    assert lines[0]["start"] <= lines[1]["start"] <= time.time()


def test_the_process_start_is_recorded_once_and_covers_the_imports(tmp_path):
    path = tmp_path / "t.jsonl"
    script = (
        "import time; before = time.time(); import torch; after = time.time()\n"
        "from trial import timings\n"
        "timings.since_process_start('start'); timings.since_process_start('start')\n"
        "print(after - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env={"TRIAL_TIMINGS": str(path), "PATH": ""},
        capture_output=True, text=True, check=True,
    )
    (line,) = read(path)
    # From the process's start: at least the torch import measured inside it, 10 ms ticks.
    assert line["span"] == "start" and line["seconds"] >= float(out.stdout) - 0.02
