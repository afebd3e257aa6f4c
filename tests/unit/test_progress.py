"""trial.progress.SweepProgress on Tune's own Trial objects (stubs: no trainable, no Ray)."""
from __future__ import annotations

import math
import pickle

import pytest
from ray.tune.experiment import Trial

from trial.progress import SweepProgress


def trials(n: int, status: str = Trial.PENDING) -> list[Trial]:
    made = [Trial("f", config={"lr": 10.0 ** -(i + 2), "fixed": 1}, trial_id=f"t{i}", stub=True) for i in range(n)]
    for trial in made:
        trial.set_status(status)
    return made


def progress(total: int = 4, mode: str = "max", pruned: set[str] | None = None) -> SweepProgress:
    return SweepProgress(metric="valid/loss" if mode == "min" else "valid/auroc", mode=mode, total=total, epochs=4,
                         space=["lr"], pruned=set() if pruned is None else pruned, bar=False)


def report(trial: Trial, metric: str, value: float, epoch: int) -> None:
    trial.update_last_result({metric: value, "epoch": epoch, "time_total_s": 2.5 * epoch})


def test_each_ended_trial_is_one_line_with_the_sweeps_state(capsys):
    sweep, watcher = trials(4, Trial.RUNNING), progress(pruned={"t1"})
    watcher.on_trial_start(0, sweep, sweep[0])
    for index, value in enumerate([0.8, 0.9, 0.7, 0.6]):
        report(sweep[index], "valid/auroc", value, 2)
    watcher.on_trial_result(0, sweep, sweep[0], {})
    # Tune calls on_trial_complete while the trial is still RUNNING, on_trial_error once it is ERROR.
    watcher.on_trial_complete(0, sweep, sweep[1])
    sweep[2].set_status(Trial.ERROR)
    watcher.on_trial_error(0, sweep, sweep[2])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("trial t1 pruned after 2 epochs: valid/auroc 0.9000 (5.0 s)  [1/4 trials ended (1 pruned, 0 failed), 3 running")
    assert lines[1].startswith("trial t2 failed after 2 epochs: valid/auroc 0.7000 (5.0 s)  [2/4 trials ended (1 pruned, 1 failed), 2 running")
    assert "best valid/auroc 0.9000 lr=0.001 |" in lines[1]  # a searched key only, not the fixed one
    assert len(lines) == 2


def test_the_best_follows_the_mode_and_skips_nan():
    sweep, watcher = trials(3, Trial.RUNNING), progress(total=3, mode="min")
    report(sweep[0], "valid/loss", 0.5, 1)
    report(sweep[0], "valid/loss", 0.7, 2)  # the best epoch counts, not the last
    report(sweep[1], "valid/loss", math.nan, 1)
    report(sweep[2], "valid/loss", 0.6, 1)
    watcher.on_trial_result(0, sweep, sweep[0], {})
    assert "best valid/loss 0.5000 lr=0.01 |" in watcher.state()


def test_trials_a_resumed_sweep_finished_earlier_count_as_ended():
    sweep = trials(3)
    sweep[0].set_status(Trial.TERMINATED)
    sweep[1].set_status(Trial.TERMINATED)
    sweep[2].set_status(Trial.RUNNING)
    watcher = progress(total=3, pruned={"t1"})
    watcher.on_trial_start(0, sweep, sweep[2])
    assert watcher.state().startswith("2/3 trials ended (1 pruned, 0 failed), 1 running")
    assert "left" not in watcher.state()  # no progress made by this run yet: no estimate


def test_the_time_left_comes_from_this_runs_progress(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("trial.progress.time.monotonic", lambda: clock[0])
    sweep, watcher = trials(2, Trial.RUNNING), progress(total=2)
    watcher.on_trial_start(0, sweep, sweep[0])
    clock[0] += 30
    report(sweep[0], "valid/auroc", 0.8, 2)  # half of one trial's 4 epochs
    report(sweep[1], "valid/auroc", 0.7, 2)
    watcher.on_trial_result(0, sweep, sweep[0], {})
    # 1 trial's worth in 30 s, 1 to go.
    assert watcher.state().endswith("0:30 elapsed, about 0:30 left")


def test_it_pickles_without_its_bar():
    watcher = SweepProgress(metric="valid/auroc", mode="max", total=2, epochs=2, space=["lr"], pruned=set(), bar=True)
    sweep = trials(2, Trial.RUNNING)
    watcher.on_trial_start(0, sweep, sweep[0])
    assert watcher.bar is not None
    copy = pickle.loads(pickle.dumps(watcher))
    assert copy.bar is None and copy.trials == [] and copy.total == 2
    watcher.close()


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0:00"), (59.6, "1:00"), (3725, "1:02:05")])
def test_clock(seconds, shown):
    from trial.progress import _clock

    assert _clock(seconds) == shown
