"""The summary printed after a sweep names where report.html opens."""
from __future__ import annotations

from dataclasses import replace
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


def test_the_summary_names_the_model_and_how_to_score_with_it() -> None:
    outcome = replace(_outcome(None), model_uri="runs:/0123456789abcdef/model", registered="models:/ecg-mi/3")
    lines = format_summary(load_config(), outcome).splitlines()
    assert "Model:         runs:/0123456789abcdef/model  (registered: models:/ecg-mi/3)" in lines
    assert (
        "Predict:       trial predict models:/ecg-mi/3 --labels LABELS.csv --tracking-uri sqlite:////runs/mlflow.db"
    ) in lines


def test_a_debug_sweep_says_its_model_is_not_registered() -> None:
    config = load_config(overrides=["debug=true", "tracking.register_as=ecg-mi"])
    outcome = replace(_outcome(None), model_uri="runs:/0123456789abcdef/model")
    lines = format_summary(config, outcome).splitlines()
    assert "Model:         runs:/0123456789abcdef/model  (a debug sweep: not registered as 'ecg-mi')" in lines
