"""The MLflow run layout, in one Ray-free place: every tag, artifact path, split name and
tracking-store rule that trial writes (tracking.py, sweep.py) and reads (report.py,
`trial report`, `trial ui`, `trial predict`).

  parent run (role sweep)      config.yaml, manifest/manifest-<hash>.csv,
                               predictions/<split>_probability.csv, report.html, model/;
                               tags trial.best_trial_id, trial.manifest_hash;
                               metrics valid/<m> and test/<m> of the best trial;
                               an ensemble (search.cv, search.repeats) also has tag
                               trial.members, metrics test/<member>/<m> and test/vote/<m>,
                               predictions/members/<member>/test_probability.csv
  child run (role trial)       one per Tune trial, nested under the parent (mlflow.parentRunId);
                               metrics train/loss and valid/<m> per epoch (an ensemble: the
                               mean over members, valid/<m>_std, <member>/valid/<m>); tags trial.trial_id,
                               trial.status, seeds, nodes; the best one tagged trial.best
  prediction run (role         one per labelled `trial predict`; tag trial.model names the model
  prediction)                  scored; metrics <m> and <column>=<value>/<m>; predictions.csv
"""
from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# -- tags ------------------------------------------------------------------------------------

ROLE_TAG = "trial.role"
"""What a run is: SWEEP_ROLE, TRIAL_ROLE or PREDICTION_ROLE."""
SWEEP_ROLE, TRIAL_ROLE, PREDICTION_ROLE = "sweep", "trial", "prediction"
PARENT_TAG = "mlflow.parentRunId"
"""MLflow's own nesting tag: the UI shows a child under this run."""
RUN_NAME_TAG = "mlflow.runName"
TRIAL_ID_TAG = "trial.trial_id"
BEST_TRIAL_TAG = "trial.best_trial_id"
"""On the parent: the trial whose best epoch the sweep's model is."""
BEST_TAG = "trial.best"
"""`true` on the best trial's child run."""
MANIFEST_HASH_TAG = "trial.manifest_hash"
STATUS_TAG = "trial.status"
"""completed, pruned or error."""
PRUNED_TAG = "trial.pruned"
ERROR_TAG = "trial.error"
DEBUG_TAG = "debug"
"""`true` on the parent and child runs of a debug sweep (`trial run --debug`)."""
SEEDS_TAG = "seeds"
"""rank:seed of each worker of a trial; member:seed of each member of an ensemble trial."""
NODES_TAG = "nodes"
"""rank:node id of each worker of a trial."""
WORKER_TAGS = (SEEDS_TAG, NODES_TAG)
MODEL_TAG = "trial.model"
"""On a prediction run: the model URI it scored with."""
MODEL_RUN_TAG = "trial.model_run_id"
"""On a prediction run: the sweep's parent run the model came from."""
SWEEP_RUN_TAG = "trial.parent_run_id"
"""On a registered model version: the sweep's parent run."""
MEMBERS_TAG = "trial.members"
"""On the parent run of an ensemble sweep: its members' labels in order, comma-separated."""

# -- splits and artifacts --------------------------------------------------------------------

SPLITS = ("train", "valid", "test")
CONFIG_ARTIFACT = "config.yaml"
MANIFEST_DIR = "manifest"
PREDICTIONS_DIR = "predictions"
MODEL_DIR = "model"
"""The sweep's best model, an MLflow pyfunc model: `runs:/<parent run id>/model`."""
REPORT_ARTIFACT = "report.html"
MEMBERS_DIR = "members"
"""predictions/members/<member>/<split>_probability.csv: one ensemble member's predictions."""
VOTE = "vote"
"""test/vote/<m>: an ensemble's majority vote (accuracy, f1_macro), beside its mean probability."""
PREDICTION_ARTIFACT = "predictions.csv"
"""On a prediction run: every scored row."""


def probability_file(split: str) -> str:
    """The file name of one split's predictions."""
    return f"{split}_probability.csv"


def probability_artifact(split: str) -> str:
    """Where one split's predictions are on the parent run."""
    return f"{PREDICTIONS_DIR}/{probability_file(split)}"


def member_label(fold: int | None, repeat: int | None) -> str:
    """An ensemble member's name: `fold<k>` (search.cv), `seed<r>` (search.repeats), or
    `fold<k>-seed<r>` (both); it prefixes the member's metrics and names its files."""
    parts = ([f"fold{fold}"] if fold is not None else []) + ([f"seed{repeat}"] if repeat is not None else [])
    return "-".join(parts)


def member_probability_artifact(member: str, split: str) -> str:
    """Where one ensemble member's predictions of a split are on the parent run."""
    return f"{PREDICTIONS_DIR}/{MEMBERS_DIR}/{member}/{probability_file(split)}"


PREDICTION_OUTPUTS = frozenset(probability_file(split) for split in SPLITS)
"""Files a sweep writes: never inputs (filecheck skips them)."""

PROBA_PREFIX = "proba_"
"""A probability column is `proba_<class>`."""
PREDICTED_COLUMN = "predicted"
TARGET_COLUMN = "target"


def proba_column(value: object) -> str:
    return f"{PROBA_PREFIX}{value}"


def metric_file_label(metric: str, score: float) -> str:
    """`valid/auroc`, 0.97861 -> `valid_auroc=0.9786`: a metric in a file name."""
    return f"{metric.replace('/', '_')}={score:.4f}"


# -- tracking stores -------------------------------------------------------------------------

DEFAULT_STORE_FILE = "mlflow.db"
SERVER_SCHEMES = ("http://", "https://")
HOSTED_SCHEMES = ("databricks", "uc:", "databricks-uc")
"""MLflow's hosted stores (Databricks, Unity Catalog): servers too, with no URL to open or probe."""
SQLITE_PREFIX = "sqlite:///"
STORAGE_DIR = "trial_runs"
"""Tune's storage (checkpoints, experiment state) and the data cache, by default in store_folder."""
OPTUNA_STORE_FILE = "optuna.db"
"""The sweeps' Optuna studies (for optuna-dashboard), beside a sqlite MLflow store."""


def sqlite_uri(database: Path) -> str:
    """The `sqlite:///` URI of a database file."""
    return f"{SQLITE_PREFIX}{database}"


def default_tracking_uri() -> str:
    """MLflow's own MLFLOW_TRACKING_URI if set, else sqlite:///mlflow.db in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or sqlite_uri(Path.cwd() / DEFAULT_STORE_FILE)


def is_server(uri: str) -> bool:
    return uri.startswith(SERVER_SCHEMES)


def is_remote(uri: str) -> bool:
    """A tracking server or a hosted store: a store already served, nothing to start for it."""
    return is_server(uri) or uri.startswith(HOSTED_SCHEMES)


def sqlite_database(uri: str) -> Path | None:
    """The database file of a `sqlite:///` store (absolute, any `?query` stripped); None for others."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(uri.removeprefix(SQLITE_PREFIX).partition("?")[0]).expanduser().resolve()


def store_folder(uri: str) -> Path:
    """Where trial keeps its own files by default (trial_runs/, optuna.db): beside a sqlite
    store, else the working directory."""
    database = sqlite_database(uri)
    return database.parent if database is not None else Path.cwd()


def file_store_path(uri: str) -> Path:
    """The folder of MLflow's file store (a plain path or a file:// URI, %-escapes decoded)."""
    if uri.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path)).resolve()
    return Path(uri).expanduser().resolve()


def is_file_store(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def artifact_root(uri: str) -> str:
    """Where a store's runs keep their artifacts, as a file URI.

    sqlite: the `mlruns` folder beside the database, wherever the sweep runs from (a
    `ray job submit` runs in a temporary copy of the working directory); file store:
    the store folder itself; any other database: `./mlruns`, MLflow's client default.
    """
    database = sqlite_database(uri)
    if database is not None:
        return (database.parent / "mlruns").as_uri()
    if is_file_store(uri):
        return file_store_path(uri).as_uri()
    return (Path.cwd() / "mlruns").as_uri()


def store_client(uri: str) -> MlflowClient:
    """The MLflow client of the store at `uri`, its Model Registry included: MLflow's own
    default registry is the process's global tracking URI, which may be another store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)
