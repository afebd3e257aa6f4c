"""The summary printed when a sweep ends: the best trial and where to look at every run."""
from __future__ import annotations

from trial.config import SweepConfig
from trial.sweep import SweepOutcome


def format_summary(config: SweepConfig, outcome: SweepOutcome) -> str:
    params = "  ".join(f"{name}={_short(value)}" for name, value in outcome.best_params.items()) or "(no searched params)"
    lines = [
        "",
        f"Sweep {config.name!r}: {outcome.n_trials} trials ({outcome.n_pruned} pruned by ASHA, {outcome.n_failed} failed)",
        f"Best trial {outcome.best_trial_id} by {config.search.metric} ({config.metric_mode}): {params}",
    ]
    for split, metrics in (("valid", outcome.valid_metrics), ("test", outcome.test_metrics)):
        shown = "  ".join(f"{name.split('/', 1)[1]} {value:.4f}" for name, value in metrics.items())
        lines.append(f"  {split:<5} {shown}")
    if outcome.members:
        lines.append(
            f"  an ensemble of {len(outcome.members)} models ({', '.join(outcome.members)}): valid is their mean, "
            "test their mean probability (each model's and the majority vote's in MLflow and the report)"
        )
    report = outcome.report_path or (
        f"not built (see the warning above); rebuild: trial report {outcome.parent_run_id} --tracking-uri {outcome.tracking_uri}"
    )
    model = outcome.registered or outcome.model_uri
    registered = f"  (registered: {outcome.registered})" if outcome.registered else ""
    if config.debug and config.tracking.register_as:
        registered = f"  (a debug sweep: not registered as {config.tracking.register_as!r})"
    lines += [
        f"Model:         {outcome.model_uri}{registered}",
        f"Predict:       trial predict {model} --labels LABELS.csv --tracking-uri {outcome.tracking_uri}",
        f"Report:        {report}",
        f"MLflow store:  {outcome.tracking_uri}  (experiment {config.experiment_name!r}, parent run {outcome.parent_run_id})",
        f"Open the UI:   trial ui --tracking-uri {outcome.tracking_uri}   (or: mlflow ui --backend-store-uri {outcome.tracking_uri})",
        f"Tune storage:  {outcome.experiment_path}",
        f"Optuna study:  optuna-dashboard {config.optuna_storage_url}  (study {outcome.optuna_study!r})",
    ]
    return "\n".join(lines)


def print_summary(config: SweepConfig, outcome: SweepOutcome) -> None:
    print(format_summary(config, outcome), flush=True)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
