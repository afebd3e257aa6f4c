"""The sweep's conductor: pre-flight, run, resume record, finish (best trial on every split).

`run_sweep(config)` prepares the data once, checks the solver on it before Ray starts,
opens the MLflow parent run, runs the trials through the Ray adapter (trial/ray_backend.py)
and evaluates the best trial's best epoch on every split. It knows no Ray API beyond
the adapter's.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from trial import ray_backend, timings
from trial.config import SweepConfig
from trial.data import PreparedData, open_split, prepare_data, probability_frame
from trial.errors import ConfigError, SweepInterrupted
from trial.evaluation import evaluate_best
from trial.loop import TrialJob, best_member_weights, read_weights, sweep_members
from trial.model import ModelSpec, check_registry, reference, register_model, save_model
from trial.plugins import load_reader, shipped_modules
from trial.preflight import fit_debug_batch_size, preflight
from trial.report import log_sweep_report
from trial.runs import (
    BEST_TAG,
    BEST_TRIAL_TAG,
    MANIFEST_DIR,
    MANIFEST_HASH_TAG,
    MEMBERS_TAG,
    MODEL_DIR,
    PREDICTIONS_DIR,
    REPORT_ARTIFACT,
    member_probability_artifact,
    probability_file,
)
from trial.tracking import Tracker, open_store

SWEEP_FILE = "trial-sweep.json"
"""In Tune's experiment folder: the sweep's MLflow parent run id and resolved config."""


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    best_trial_id: str
    best_params: dict[str, Any]
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    tracking_uri: str
    experiment_path: str
    n_trials: int
    n_pruned: int
    n_failed: int
    optuna_study: str
    model_uri: str = ""
    """The best model, an MLflow pyfunc model on the parent run: runs:/<parent run id>/model."""
    registered: str | None = None
    """models:/<tracking.register_as>/<version> when the sweep registered its model."""
    members: tuple[str, ...] = ()
    """An ensemble's member labels (search.cv, search.repeats); () for one model."""
    report_path: Path | None = None
    """Where a person opens report.html: the logged artifact where the artifact store is
    local files, else a copy in experiment_path; None where it could not be built."""


def check_storage(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"storage: {path} is not writable ({error.strerror or error})") from None


def run_sweep(
    config: SweepConfig,
    *,
    address: str | None = None,
    verbose: int = 1,
    resume: bool = False,
    resume_command: str = "run_sweep(config, resume=True)",
) -> SweepOutcome:
    """Run the whole sweep; user mistakes surface as UserError before any run is opened.

    `resume=True` continues the sweep of this config's name after its driver died or was
    interrupted: finished trials stay, unfinished ones restart from their checkpoints,
    Optuna keeps its history, and the same MLflow parent and child runs are written on.
    `resume_command` is what the Ctrl-C message tells the user to run. `verbose`: 0 no
    progress (warnings, errors); 1 the sweep's own progress (trial.progress); 2 Tune's
    tables and Ray's INFO lines too.
    """
    # Keeping one checkpoint per trial forces a state snapshot per report; with epochs
    # of a few seconds Tune warns about it every time, which buries the progress table.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    timings.since_process_start("driver: process start and imports")
    ray_backend.check_ray_train_settings()
    with timings.span("driver: tracking store"):
        store = open_store(config)  # an unreachable tracking store fails here, first
        if config.tracking.register_as:
            check_registry(store[0], config.tracking.register_as)
    check_storage(config.storage_path)
    experiment_path = config.storage_path / config.name
    parent_id = _saved_parent_id(config, experiment_path) if resume else None
    requested = config  # what a resume compares with: the config before it was fitted to the data
    with timings.span("driver: data and manifest"):
        prepared = prepare_data(config)
    job = sweep_job(config, prepared)
    if config.debug:
        config = fit_debug_batch_size(config, job)
        job = replace(job, params=config.solver.params)
    with timings.span("driver: pre-flight"):
        preflight(config, job)
    tracker = Tracker(config, store)
    if parent_id is not None:
        tracker.reopen_parent(parent_id)  # a finished or missing parent fails here, before Ray starts
    with timings.span("driver: Ray start"):
        ray_backend.connect_ray(address, user_modules=shipped_modules(config.code_references()), ray_info=verbose >= 2)
    ray_backend.check_cluster_fits(config, local=not (address or os.environ.get("RAY_ADDRESS")))

    if parent_id is None:
        with timings.span("driver: MLflow writes"):
            tracker.start_parent({MANIFEST_HASH_TAG: prepared.manifest_hash})
            tracker.log_artifact(prepared.manifest_csv, MANIFEST_DIR)
        _save_sweep(requested, experiment_path, tracker.parent_id)
    pruned: set[str] = set()
    callback = tracker.callback(pruned)
    try:
        with timings.span("driver: trials (Tune)"), timings.cpu("driver: its CPU time during the trials"):
            results = ray_backend.run_trials(
                config,
                job,
                callback,
                pruned,
                study_name=optuna_study_name(config, callback),
                verbose=verbose,
                resume=resume,
            )
        # Tune answers Ctrl-C by saving its state and returning early, not by raising.
        if len(callback.ended) < config.search.num_samples:
            raise SweepInterrupted(
                f"interrupted after {len(callback.ended)} of {config.search.num_samples} trials; "
                f"the runs are marked KILLED, Tune's state is in {results.experiment_path}; "
                f"resume with: {resume_command}"
            )
        # A run still RUNNING here was opened by a driver killed before Tune's next snapshot
        # saved its trial: resumed Tune never heard of that trial, so nothing else ends it.
        callback.end_unfinished("KILLED")
        with timings.span("driver: best trial's evaluation and model"):
            outcome = _finish(config, tracker, callback, job, results)
    except BaseException as error:
        status = "KILLED" if isinstance(error, (KeyboardInterrupt, SweepInterrupted)) else "FAILED"
        callback.end_unfinished(status)
        tracker.end_parent(status)
        raise
    tracker.end_parent("FINISHED")
    # Once the parent has ended, so the report shows its final status (MLflow takes
    # artifacts on a finished run), and a report that fails leaves no run RUNNING.
    with timings.span("driver: report"):
        report_path = log_sweep_report(
            tracker.client, outcome.parent_run_id, config.tracking_uri, Path(outcome.experiment_path) / REPORT_ARTIFACT
        )
    return replace(outcome, report_path=report_path)


def _save_sweep(config: SweepConfig, experiment_path: Path, parent_id: str) -> None:
    """Beside Tune's state: which MLflow parent run this sweep writes, and its config."""
    experiment_path.mkdir(parents=True, exist_ok=True)
    record = {"parent_run_id": parent_id, "config": config.to_dict()}
    (experiment_path / SWEEP_FILE).write_text(json.dumps(record, indent=1))


def _saved_parent_id(config: SweepConfig, experiment_path: Path) -> str:
    """The parent run of the sweep to resume, once its Tune state and config check out."""
    path = experiment_path / SWEEP_FILE
    if not (path.is_file() and ray_backend.can_resume(experiment_path)):
        raise ConfigError(f"--resume: no sweep {config.name!r} to resume in {config.storage_path}; run it without --resume")
    record = json.loads(path.read_text())
    # The searcher, the checkpoints and the runs logged so far all belong to the old config.
    changed = _changed_keys(record["config"], json.loads(json.dumps(config.to_dict())))
    if changed:
        raise ConfigError(
            f"--resume: the config differs from the one sweep {config.name!r} started with at {', '.join(changed)}; "
            "resume with the same config file and --set values"
        )
    return record["parent_run_id"]


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            changed
            for key in sorted(old.keys() | new.keys())
            for changed in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [prefix.rstrip(".")]


def sweep_job(config: SweepConfig, prepared: PreparedData) -> TrialJob:
    """The job every trial of this sweep starts from, before its searched values."""
    init_from = config.solver.params.init_from
    return TrialJob(
        solver=config.solver.cls,
        params=config.solver.params,
        data=prepared,
        root_seed=config.seed,
        metric=config.search.metric,
        mode=config.metric_mode,
        threads=config.scaling.cpus_per_worker,
        use_gpu=config.scaling.use_gpu,
        pretrained=read_weights(init_from) if init_from is not None else None,
        members=sweep_members(config),
    )


def optuna_study_name(config: SweepConfig, callback: Any) -> str:
    """One study per sweep, named after its parent run so a resumed sweep finds it again."""
    return f"{config.name}-{callback.tracker.parent_id}"


def _finish(
    config: SweepConfig, tracker: Tracker, callback: Any, sweep: TrialJob, results: ray_backend.TrialResults
) -> SweepOutcome:
    """Evaluate the best trial's best epoch on valid and test; record it on the parent run."""
    best = results.best()
    trial_id, searched = best.trial_id, best.searched
    job = sweep.with_trial_params(searched)
    weights = best_member_weights(best.state)
    evaluation = evaluate_best(job, weights)
    with tempfile.TemporaryDirectory(prefix="trial-predictions-") as directory:
        for split_name, (split, proba) in evaluation.predictions.items():
            probability_frame(job.data, split, proba).to_csv(Path(directory) / probability_file(split_name), index=False)
        for member, (split, proba) in evaluation.member_predictions.items():
            path = Path(directory) / Path(member_probability_artifact(member, "test")).relative_to(PREDICTIONS_DIR)
            path.parent.mkdir(parents=True, exist_ok=True)
            probability_frame(job.data, split, proba).to_csv(path, index=False)
        tracker.log_artifact(Path(directory), PREDICTIONS_DIR)
    metrics = evaluation.metrics
    tracker.log_params(tracker.parent_id, searched)
    tracker.client.set_tag(tracker.parent_id, BEST_TRIAL_TAG, trial_id)
    if job.members:
        tracker.client.set_tag(tracker.parent_id, MEMBERS_TAG, ",".join(weights))
    tracker.log_metrics(tracker.parent_id, metrics)
    best_run = callback.run_ids.get(trial_id)
    if best_run is not None:
        tracker.log_metrics(best_run, {key: value for key, value in metrics.items() if key.startswith("test/")})
        tracker.client.set_tag(best_run, BEST_TAG, "true")
    model_uri, registered = _log_model(config, tracker, job, list(weights.values()), metrics)
    return SweepOutcome(
        parent_run_id=tracker.parent_id,
        best_trial_id=trial_id,
        best_params=searched,
        valid_metrics=_headline(metrics, "valid"),
        test_metrics=_headline(metrics, "test"),
        members=tuple(label for label in weights if label),
        tracking_uri=config.tracking_uri,
        experiment_path=results.experiment_path,
        n_trials=results.n_trials,
        n_pruned=len(callback.pruned_trials),
        n_failed=results.n_failed,
        optuna_study=optuna_study_name(config, callback),
        model_uri=model_uri,
        registered=registered,
    )


def _headline(metrics: Mapping[str, float], split: str) -> dict[str, float]:
    """`<split>/<m>` for each metric, without an ensemble's members, vote and spreads."""
    return {
        key: value
        for key, value in metrics.items()
        if key.startswith(f"{split}/") and key.count("/") == 1 and not key.endswith("_std")
    }


def _log_model(
    config: SweepConfig,
    tracker: Tracker,
    job: TrialJob,
    members: list[Mapping[str, torch.Tensor]],
    metrics: Mapping[str, float],
) -> tuple[str, str | None]:
    """The best model (or ensemble: `members`' weights, their probabilities averaged) as an
    MLflow model on the parent run, and a registry version when tracking.register_as is
    set: its URI, and the registered one."""
    prepared = job.data
    spec = ModelSpec(
        solver=reference(job.solver),
        params=job.params.model_dump(mode="json"),
        input_shape=prepared.input_shape,
        classes=prepared.classes,
        target=prepared.target,
        path_column=config.data.path_column,
        reader=reference(load_reader(config.data.reader)) if config.data.reader else None,
        features=prepared.features,
        stratify=tuple(config.data.stratify or (prepared.target,)),
        members=(),
        sweep_run_id=tracker.parent_id,
    )
    with tempfile.TemporaryDirectory(prefix="trial-model-") as directory:
        path = save_model(
            Path(directory),
            spec,
            members,
            example=_input_example(prepared),
            code_paths=shipped_modules(config.code_references()),
        )
        tracker.log_artifact(path, MODEL_DIR)
    uri = f"runs:/{tracker.parent_id}/{MODEL_DIR}"
    name = config.tracking.register_as
    if name is None or config.debug:  # a debug sweep's model, trained on 5% of the data, is no version of anything
        return uri, None
    tags = {key: f"{value:.6g}" for key, value in _version_metrics(metrics).items()}
    return uri, f"models:/{name}/{register_model(tracker.client, name, tracker.parent_id, tags)}"


def _version_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """What a registry version is tagged with: the headline valid and test metrics."""
    return {**_headline(metrics, "valid"), **_headline(metrics, "test")}


def _input_example(prepared: PreparedData) -> np.ndarray | pd.DataFrame:
    """The first valid row as the model takes it: its array, or its feature columns."""
    valid = open_split(prepared, "valid")
    if prepared.features:
        return valid.frame.loc[:0, list(prepared.features)].astype(np.float64)
    return np.asarray(valid.x[valid.rows[:1]], dtype=np.float32)
