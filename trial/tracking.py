"""MLflow: one parent run per sweep, one child run per trial nested under it.

Ray's MLflowLoggerCallback makes flat runs (ray-project/ray#19978), so the MLflow UI
cannot group a sweep's trials. Here the driver opens the parent run and a Tune
callback, living in the driver beside the Tune controller (never on a training
thread), writes each trial's child run with `mlflow.parentRunId` set, in batches.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from sqlalchemy.exc import SQLAlchemyError

from trial import timings
from trial.config import SweepConfig
from trial.errors import ConfigError, first_line
from trial.runs import (
    CONFIG_ARTIFACT,
    DEBUG_TAG,
    ERROR_TAG,
    PARENT_TAG,
    PRUNED_TAG,
    ROLE_TAG,
    RUN_NAME_TAG,
    STATUS_TAG,
    SWEEP_ROLE,
    TRIAL_ID_TAG,
    TRIAL_ROLE,
    WORKER_TAGS,
    artifact_root,
    is_server,
    sqlite_database,
    store_client,
)

# Tune adds its own bookkeeping to every result; only the solver's metrics go to MLflow:
# train/ and valid/ ones, an ensemble's also per member (fold0/valid/auroc).
_METRIC_PREFIXES = ("train/", "valid/")


def _is_epoch_metric(key: str) -> bool:
    return key.startswith(_METRIC_PREFIXES) or key.partition("/")[2].startswith(_METRIC_PREFIXES)


class Tracker:
    """The sweep's MLflow experiment and parent run."""

    def __init__(self, config: SweepConfig, store: tuple[MlflowClient, str] | None = None) -> None:
        """`store`: what `open_store(config)` returned, where the caller probed the store earlier."""
        self.config = config
        self.client, self.experiment_id = store or open_store(config)
        self.parent_id: str | None = None
        # Set on the parent and every child, so debug sweeps filter out in the UI.
        self.common_tags = {DEBUG_TAG: "true"} if config.debug else {}

    def start_parent(self, extra_tags: Mapping[str, str] | None = None) -> str:
        tags = {ROLE_TAG: SWEEP_ROLE, RUN_NAME_TAG: self.config.name, **self.common_tags, **(extra_tags or {})}
        run = self.client.create_run(self.experiment_id, run_name=self.config.name, tags=tags)
        self.parent_id = run.info.run_id
        searched = set(self.config.search.space)
        params = {k: v for k, v in self.config.flat_params().items() if k not in searched}
        self.log_params(self.parent_id, params)
        self.log_text(self.config.to_yaml(), CONFIG_ARTIFACT)
        return self.parent_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit for params
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if _is_number(v)]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.parent_id, text, name)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """A file, or a folder's files, on the parent run under `folder`."""
        if path.is_dir():
            self.client.log_artifacts(self.parent_id, str(path), folder)
        else:
            self.client.log_artifact(self.parent_id, str(path), folder)

    def reopen_parent(self, run_id: str) -> None:
        """Continue an interrupted sweep's parent run (`trial run --resume`)."""
        try:
            status = self.client.get_run(run_id).info.status
        except MlflowException:
            raise ConfigError(
                f"--resume: the sweep's parent run {run_id} is not in {self.config.tracking_uri}; "
                "resume with the tracking.uri the sweep started with"
            ) from None
        if status == "FINISHED":
            raise ConfigError(f"--resume: sweep {self.config.name!r} already finished (parent run {run_id})")
        self.parent_id = run_id
        self.client.update_run(run_id, status="RUNNING")

    def end_parent(self, status: str) -> None:
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status)

    def callback(self, pruned_trials: set[str]) -> TrialRunsCallback:
        return TrialRunsCallback(self, pruned_trials)

    def child_runs(self) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'", max_results=10000
        )


class TrialRunsCallback(Callback):
    """Writes one child run per Tune trial under the sweep's parent run.

    Exactly one run per trial, each epoch logged once, also when a trial restarts from
    its checkpoint (its worker died) or the sweep resumes after its driver died: the
    runs already under the parent are found again by their trial id tag.
    """

    def __init__(self, tracker: Tracker, pruned_trials: set[str]) -> None:
        self.tracker = tracker
        self.pruned_trials = pruned_trials
        self.run_ids: dict[str, str] = {}
        self.last_epoch: dict[str, int] = {}
        self.ended: set[str] = set()
        """Trials that completed, were pruned or failed."""
        for run in tracker.child_runs():  # none unless the sweep is resumed
            trial_id = run.data.tags[TRIAL_ID_TAG]
            self.run_ids[trial_id] = run.info.run_id
            # An epoch's metrics go in one batch: one metric's history holds every epoch logged.
            logged = next((key for key in run.data.metrics if _is_epoch_metric(key)), None)
            if logged is not None:
                history = tracker.client.get_metric_history(run.info.run_id, logged)
                self.last_epoch[trial_id] = max(metric.step for metric in history)
            if run.info.status in ("FINISHED", "FAILED"):
                self.ended.add(trial_id)
            if run.data.tags.get(PRUNED_TAG) == "true":
                pruned_trials.add(trial_id)

    @timings.timed("driver: MLflow writes")
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tracker = self.tracker
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is not None:
            # Tune starts a trial again after its worker died (on_trial_recover, then this)
            # and when a sweep resumes: same run, running again (a Ctrl-C had ended it KILLED).
            tracker.client.update_run(run_id, status="RUNNING")
            self.ended.discard(trial.trial_id)
            return
        tags = {
            PARENT_TAG: tracker.parent_id,
            ROLE_TAG: TRIAL_ROLE,
            TRIAL_ID_TAG: trial.trial_id,
            RUN_NAME_TAG: trial.trial_id,
            **tracker.common_tags,
        }
        run = tracker.client.create_run(tracker.experiment_id, run_name=trial.trial_id, tags=tags)
        self.run_ids[trial.trial_id] = run.info.run_id
        params = {**tracker.config.flat_params(), **trial.config}
        tracker.log_params(run.info.run_id, params)

    @timings.timed("driver: MLflow writes")
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        epoch = result.get("epoch")
        if run_id is None or epoch is None:
            return
        # A trial restarted from its checkpoint reports some epochs again: log each once.
        if epoch <= self.last_epoch.get(trial.trial_id, 0):
            return
        if trial.trial_id not in self.last_epoch:
            tags = [RunTag(key, str(result[key])) for key in WORKER_TAGS if key in result]
            self.tracker.client.log_batch(run_id, tags=tags)
        self.last_epoch[trial.trial_id] = epoch
        metrics = {k: v for k, v in result.items() if _is_epoch_metric(k)}
        self.tracker.log_metrics(run_id, metrics, step=int(epoch))

    @timings.timed("driver: MLflow writes")
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.add(trial.trial_id)
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        pruned = trial.trial_id in self.pruned_trials
        self.tracker.client.set_tag(run_id, PRUNED_TAG, str(pruned).lower())
        self.tracker.client.set_tag(run_id, STATUS_TAG, "pruned" if pruned else "completed")
        self.tracker.client.set_terminated(run_id, "FINISHED")

    @timings.timed("driver: MLflow writes")
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.add(trial.trial_id)
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        client = self.tracker.client
        client.set_tag(run_id, STATUS_TAG, "error")
        client.set_tag(run_id, ERROR_TAG, _error_text(trial)[:5000])
        client.set_terminated(run_id, "FAILED")

    def end_unfinished(self, status: str) -> None:
        """Close runs Tune never finished (Ctrl-C, driver error), so none stays RUNNING."""
        client = self.tracker.client
        for run_id in self.run_ids.values():
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, status)


def open_store(config: SweepConfig) -> tuple[MlflowClient, str]:
    """The client and the (found or created) experiment; an unusable store is the user's tracking.uri."""
    _probe_server(config.tracking_uri)
    try:
        client = store_client(config.tracking_uri)
        experiment = client.get_experiment_by_name(config.experiment_name)
        if experiment is None:
            return client, client.create_experiment(config.experiment_name, artifact_location=_artifact_location(config))
        if experiment.lifecycle_stage == "deleted":
            raise ConfigError(
                f"tracking.experiment: {config.experiment_name!r} is deleted in {config.tracking_uri}; "
                "restore it or choose another name"
            )
        return client, experiment.experiment_id
    except (MlflowException, OSError, SQLAlchemyError) as error:
        raise ConfigError(f"tracking.uri: cannot use {config.tracking_uri!r}: {first_line(error)}") from None


def _artifact_location(config: SweepConfig) -> str | None:
    """Artifacts of a sqlite store go to mlruns/ beside it, wherever the sweep runs from
    (a `ray job submit` runs in a temporary copy of the working directory)."""
    uri = config.tracking_uri
    if sqlite_database(uri) is None:
        return None  # a tracking server decides
    return artifact_root(uri)


def _probe_server(uri: str) -> None:
    """Fail in seconds on a tracking server that is not there: MLflow's own client
    retries with back-off for minutes before it gives up."""
    if not is_server(uri):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10).close()
    except urllib.error.HTTPError:
        return  # something answers; MLflow's own calls will say whether it is a tracking server
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError(f"tracking.uri: cannot reach {uri!r}: {reason}") from None


def _error_text(trial: Any) -> str:
    error_file = trial.error_file
    if error_file and Path(error_file).is_file():
        text = Path(error_file).read_text().strip()
        # The last line of a traceback is the error message itself.
        return text.splitlines()[-1] if text else "unknown error"
    return "unknown error"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

