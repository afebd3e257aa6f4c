"""The summary printed after a sweep names where report.html opens."""
from __future__ import annotations

from pathlib import Path

from trial.config import load_config
from trial.summary import format_summary
from trial.sweep import SweepOutcome


def _outcome(report_path: Path | None) -> SweepOutcome:
    return SweepOutcome(
        parent_run_id="0123456789abcdef",
        best_trial_id="abc_00001",
        best_params={"lr": 0.001},
        valid_metrics={"valid/auroc": 0.8},
        test_metrics={"test/auroc": 0.7},
        tracking_uri="sqlite:////runs/mlflow.db",
        experiment_path="/runs/trial_runs/demo-ecg",
        n_trials=8,
        n_pruned=6,
        n_failed=0,
        optuna_study="demo-ecg-0123456789abcdef",
        report_path=report_path,
    )


def test_the_summary_prints_the_report_path() -> None:
    path = Path("/runs/mlruns/0123456789abcdef/artifacts/report.html")
    lines = format_summary(load_config(), _outcome(path)).splitlines()
    assert f"Report:        {path}" in lines


def test_a_report_not_built_says_how_to_rebuild_it() -> None:
    lines = format_summary(load_config(), _outcome(None)).splitlines()
    assert (
        "Report:        not built (see the warning above); rebuild: "
        "trial report 0123456789abcdef --tracking-uri sqlite:////runs/mlflow.db"
    ) in lines
