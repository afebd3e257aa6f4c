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


def test_spans_record_wall_or_cpu_time_also_when_the_block_raises(tmp_path, monkeypatch):
    path = tmp_path / "t.jsonl"
    monkeypatch.setenv(timings.ENV, str(path))

    @timings.timed("called")
    def work() -> int:
        time.sleep(0.05)
        return 3

    assert work() == 3
    with pytest.raises(ValueError), timings.span("failed"):
        raise ValueError
    with timings.cpu("cpu"):
        time.sleep(0.2)  # waiting uses no CPU
        sum(range(2_000_000))
    lines = read(path)
    assert [line["span"] for line in lines] == ["called", "failed", "cpu"]
    assert 0 < lines[2]["seconds"] < 0.2
    assert 0.05 <= lines[0]["seconds"] < 1.0
    assert lines[0]["start"] <= lines[1]["start"] <= time.time()


def test_the_process_start_and_the_package_import_are_recorded_once_each(tmp_path):
    path = tmp_path / "t.jsonl"
    script = (
        "import time; before = time.time()\n"
        "import trial; after = time.time()  # trial imports torch\n"
        "from trial import timings\n"
        "for _ in range(2):\n"
        "    timings.since_process_start('start'); timings.since_package_import('imports')\n"
        "print(after - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env={"TRIAL_TIMINGS": str(path), "PATH": ""},
        capture_output=True, text=True, check=True,
    )
    imported = float(out.stdout)
    start, imports = read(path)
    # From the process's start (10 ms ticks): at least the import measured inside it.
    assert start["span"] == "start" and start["seconds"] >= imported - 0.02
    assert imports["span"] == "imports" and imported - 0.05 <= imports["seconds"] <= start["seconds"]
