"""Where a sweep's time goes, measured: named spans appended as JSON lines to the file that
TRIAL_TIMINGS names (benchmarks/overhead.py sets it and sums them), nothing when unset.

A line is {"span": name, "pid": process, "start": epoch seconds, "seconds": duration}.
Every process of a local sweep writes to the same file (Ray's workers inherit the
driver's environment); each line is one small append, which the OS keeps whole.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ENV = "TRIAL_TIMINGS"
PACKAGE_IMPORT_STARTED = time.time()
"""When this process began to import trial (trial/__init__.py imports this module first)."""
_recorded_once: set[str] = set()


def span(name: str) -> contextlib.AbstractContextManager[None]:
    """Time the block as `name` (also when it raises)."""
    return _measured(name, time.time)


def cpu(name: str) -> contextlib.AbstractContextManager[None]:
    """This process's CPU time (every thread's) during the block, as span `name`."""
    return _measured(name, time.process_time)


@contextlib.contextmanager
def _measured(name: str, clock: Callable[[], float]) -> Iterator[None]:
    path = os.environ.get(ENV)
    if not path:
        yield
        return
    start, clock_start = time.time(), clock()
    try:
        yield
    finally:
        _append(path, name, start, clock() - clock_start)


def timed(name: str) -> Callable[[F], F]:
    """A function's every call, as span `name`."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with span(name):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def since_process_start(name: str) -> None:
    """Record, once per process, the time from the process's start until now as `name`:
    interpreter start and imports. In a Ray worker, which Ray may start before it has
    work, this also covers the wait for it: a Ray Train worker's start until its function
    runs. A Tune trial's own imports: since_package_import."""
    _once(name, _process_start_time())


def since_package_import(name: str) -> None:
    """Record, once per process, the time since this process began to import trial as
    `name`: in a Ray worker, importing trial and what it needs (torch, pandas, Ray Tune)
    to run its first trial."""
    _once(name, PACKAGE_IMPORT_STARTED)


def _once(name: str, started: float) -> None:
    path = os.environ.get(ENV)
    if not path or name in _recorded_once:
        return
    _recorded_once.add(name)
    _append(path, name, started, time.time() - started)


def _process_start_time() -> float:
    """This process's start, in epoch seconds, from /proc (Linux): its start in clock ticks
    after boot, against the time since boot now (10 ms steps)."""
    with open("/proc/self/stat") as stat:
        ticks_after_boot = int(stat.read().rsplit(")", 1)[1].split()[19])
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks_after_boot / os.sysconf("SC_CLK_TCK")
    return time.time() - age


def _append(path: str, name: str, start: float, seconds: float) -> None:
    line = json.dumps({"span": name, "pid": os.getpid(), "start": start, "seconds": seconds}) + "\n"
    with open(path, "a") as out:
        out.write(line)
