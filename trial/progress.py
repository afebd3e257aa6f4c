"""The sweep's own progress on the terminal, in place of Tune's tables.

One line per trial that ends (completed, pruned, failed), then the state of the whole
sweep: trials ended of the total, running, pruned, failed, the best value so far and
its params, elapsed time and an estimate of the time left. On a terminal a tqdm bar at
the bottom keeps that state live between trials and the lines scroll above it; when the
output is not a terminal (a file, a pipe, `ray job submit`, CI) there is no bar: each
line carries the state, and a line of state alone comes at most every HEARTBEAT_S when
no trial has ended, so a log shows the sweep is alive.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Sequence

from ray.tune import Callback
from ray.tune.experiment import Trial
from tqdm import tqdm

HEARTBEAT_S = 60.0
"""Without a terminal: the longest gap between two lines of state."""
REFRESH_S = 1.0
"""On a terminal: how often the bar redraws (its elapsed time and estimate)."""


class SweepProgress(Callback):
    """A Tune callback in the driver. `pruned` is the set of trial ids the scheduler
    stopped (shared with it); `space` the searched keys shown beside the best value;
    `epochs` a trial's most epochs, for the share of a running trial that is done."""

    def __init__(
        self, *, metric: str, mode: str, total: int, epochs: int, space: Sequence[str], pruned: set[str],
        bar: bool | None = None,
    ) -> None:
        self.metric, self.mode, self.total, self.epochs = metric, mode, total, max(1, epochs)
        self.space, self.pruned = list(space), pruned
        # stdout is looked up at each write, not kept: Tune pickles its callbacks with the sweep's state.
        self.use_bar = sys.stdout.isatty() if bar is None else bar
        self.bar: tqdm | None = None
        self.started = time.monotonic()
        self.done_at_start: float | None = None
        self.last_output = self.started
        self.trials: list[Trial] = []
        self.ended: dict[str, str] = {}
        """trial id -> completed, pruned or failed, as each trial ends: Tune calls
        on_trial_complete before it marks the trial TERMINATED."""

    # -- Tune's hooks ------------------------------------------------------------------------

    def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self._update(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any) -> None:
        self._update(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self._ended(trials, trial, "pruned" if trial.trial_id in self.pruned else "completed")

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self._ended(trials, trial, "failed")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if self.use_bar and now - self.last_output >= REFRESH_S:
            self._update(trials)
        elif not self.use_bar and now - self.last_output >= HEARTBEAT_S:
            self._see(trials)
            self._write(f"progress: {self.state()}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    def close(self) -> None:
        """End the bar, so what follows (the summary, an error) starts on its own line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the tuner; a live bar holds a terminal, and the
        # trials are Tune's, seen again at the next event.
        return {**self.__dict__, "bar": None, "trials": []}

    # -- the state ---------------------------------------------------------------------------

    def state(self) -> str:
        """`3/8 trials ended (1 pruned, 0 failed), 2 running | best valid/auroc 0.9865
        lr=0.0029 | 1:20 elapsed, about 1:45 left`: short enough for a terminal's line."""
        counts = {"completed": 0, "pruned": 0, "failed": 0, "running": 0}
        for trial in self.trials:
            status = self._status(trial)
            if status in counts:
                counts[status] += 1
        ended = counts["completed"] + counts["pruned"] + counts["failed"]
        parts = [
            f"{ended}/{self.total} trials ended ({counts['pruned']} pruned, {counts['failed']} failed), "
            f"{counts['running']} running",
            self._best(),
            f"{_clock(time.monotonic() - self.started)} elapsed{self._time_left()}",
        ]
        return " | ".join(part for part in parts if part)

    def _status(self, trial: Trial) -> str:
        """completed, pruned, failed, running or waiting (pending, paused)."""
        if trial.trial_id in self.ended:
            return self.ended[trial.trial_id]
        if trial.status == Trial.TERMINATED:  # ended before this driver (a resumed sweep)
            return "pruned" if trial.trial_id in self.pruned else "completed"
        if trial.status == Trial.ERROR:
            return "failed"
        return "running" if trial.status == Trial.RUNNING else "waiting"

    def _done(self) -> float:
        """Trials' worth of work done: ended trials, and running ones by their epochs."""
        done = 0.0
        for trial in self.trials:
            status = self._status(trial)
            if status == "running":
                done += min(1.0, (trial.last_result or {}).get("epoch", 0) / self.epochs)
            elif status != "waiting":
                done += 1
        return done

    def _time_left(self) -> str:
        """From the rate of this run's own progress (a resumed sweep's earlier trials do not
        count); an overestimate where the scheduler prunes, since pruned trials are shorter."""
        done = self._done()
        progress, elapsed = done - (self.done_at_start or 0.0), time.monotonic() - self.started
        if progress <= 0 or done >= self.total:
            return ""
        return f", about {_clock(elapsed * (self.total - done) / progress)} left"

    def _best(self) -> str:
        best: tuple[float, Trial] | None = None
        for trial in self.trials:
            analysis = trial.metric_analysis.get(self.metric, {})
            value = analysis.get(self.mode)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if best is None or (value > best[0] if self.mode == "max" else value < best[0]):
                best = (value, trial)
        if best is None:
            return ""
        value, trial = best
        params = " ".join(f"{key}={_short(trial.config.get(key))}" for key in self.space)
        return f"best {self.metric} {value:.4f}" + (f" {params}" if params else "")

    # -- output --------------------------------------------------------------------------

    def _see(self, trials: list) -> None:
        """Tune's trials as of this event; the first event fixes this run's starting point."""
        self.trials = trials
        if self.done_at_start is None:
            self.done_at_start = self._done()

    def _update(self, trials: list) -> None:
        self._see(trials)
        if not self.use_bar:
            return
        if self.bar is None:
            self.bar = tqdm(total=self.total, file=sys.stdout, dynamic_ncols=True, bar_format="{bar:16} {desc}")
        self.bar.n = self._done()
        self.bar.set_description_str(self.state(), refresh=False)
        self.bar.refresh()
        self.last_output = time.monotonic()

    def _ended(self, trials: list, trial: Trial, status: str) -> None:
        self.ended[trial.trial_id] = status
        self._see(trials)
        result = trial.last_result or {}
        value = result.get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, (int, float)) else f"no {self.metric}"
        line = (
            f"trial {trial.trial_id} {status} after {result.get('epoch', 0)} epochs: {shown} "
            f"({result.get('time_total_s', 0.0):.1f} s)"
        )
        if self.use_bar:
            self._write(line)
            self._update(trials)
        else:
            self._write(f"{line}  [{self.state()}]")

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)
        self.last_output = time.monotonic()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
