"""Post-analysis of one sweep: a single self-contained HTML page, read back from MLflow.

Everything comes from the MLflow store, never from Tune's storage or the driver's
memory, so a report can be rebuilt later, anywhere the store can be reached: the sweep's
parent run (its config, split manifest, best trial's predictions and metrics) and its
child runs (one per trial: searched params, per-epoch metrics, status), as laid out in
trial/runs.py.

The page has five sections, one function each: the search (every trial's value and
learning curve, pruned ones included, and Optuna's parameter importance on a study rebuilt
in memory from the child runs), the split manifest (does each split keep
the stratify columns' shares?), the best trial on test and valid (confusion matrix, ROC,
reliability), metrics per stratum value (per hospital), and a table of every trial. An
ensemble sweep (search.cv, search.repeats) has one more after the best trial's: the
ensemble, its majority vote and each member on test.
plotly.js is embedded once in the page's head, so it opens without a network.
"""
from __future__ import annotations

import html
import itertools
import math
import os
import shutil
import string
import tempfile
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import optuna
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import ValidationError
from plotly.offline import get_plotlyjs
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from trial.config import Distribution
from trial.errors import ConfigError, DataError, first_line
from trial.metrics import ECE_BINS, METRIC_MODES, METRIC_NAMES, classification_metrics
from trial.runs import (
    BEST_TRIAL_TAG,
    CONFIG_ARTIFACT,
    DEBUG_TAG,
    MANIFEST_DIR,
    MEMBERS_DIR,
    MEMBERS_TAG,
    PARENT_TAG,
    PREDICTIONS_DIR,
    PROBA_PREFIX,
    REPORT_ARTIFACT,
    ROLE_TAG,
    SPLITS,
    STATUS_TAG,
    SWEEP_ROLE,
    TARGET_COLUMN,
    TRIAL_ID_TAG,
    TRIAL_ROLE,
    VOTE,
    member_probability_artifact,
    proba_column,
    probability_artifact,
    probability_file,
    store_client,
)

_STATES = {
    "completed": optuna.trial.TrialState.COMPLETE,
    "pruned": optuna.trial.TrialState.PRUNED,
    "error": optuna.trial.TrialState.FAIL,
}
_FIGURE_HEIGHT = 420


# -- what the report reads ---------------------------------------------------------------


@dataclass(frozen=True)
class TrialRecord:
    """One child run: its trial id, status, searched params and the sweep metric per epoch."""

    trial_id: str
    run_id: str
    status: str
    """trial.status (completed, pruned, error), or the run's own status where the tag is missing."""
    params: dict[str, Any]
    """Searched params, converted back to their distribution's type."""
    history: tuple[tuple[int, float], ...]
    """(epoch, value) of the sweep metric, in epoch order."""

    @property
    def final(self) -> float:
        return self.history[-1][1] if self.history else math.nan

    def best(self, mode: str) -> float:
        values = [value for _, value in self.history if math.isfinite(value)]
        if not values:
            return math.nan
        return max(values) if mode == "max" else min(values)


@dataclass(frozen=True)
class Sweep:
    """Everything the report shows, loaded once from the MLflow store."""

    parent: Run
    experiment_name: str
    config: dict[str, Any]
    metric: str
    mode: str
    space: dict[str, Distribution]
    target: str
    stratify: tuple[str, ...]
    balance: tuple[str, ...]
    manifest: pd.DataFrame | None
    predictions: dict[str, pd.DataFrame]
    """split -> the best trial's probability CSV (an ensemble's: the mean over its members);
    empty where none was logged."""
    members: tuple[str, ...]
    """An ensemble's member labels in order (tag trial.members); empty for a sweep without one."""
    member_predictions: dict[str, pd.DataFrame]
    """member -> its own test probability CSV; a member without one is absent."""
    trials: tuple[TrialRecord, ...]
    """In start order; the index is the Optuna trial number."""

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.parent.info.run_name)

    @property
    def best_trial_id(self) -> str | None:
        return self.parent.data.tags.get(BEST_TRIAL_TAG)


def load_sweep(client: MlflowClient, parent_run_id: str) -> Sweep:
    """Read a sweep's parent run, its artifacts and every child run from MLflow."""
    parent = client.get_run(parent_run_id)
    _check_sweep_run(parent)
    config = _read_config(client, parent_run_id)
    search = config.get("search") or {}
    data = config.get("data") or {}
    metric = str(search.get("metric") or "valid/loss")
    mode = search.get("mode") or METRIC_MODES.get(metric.partition("/")[2], "min")
    space = _read_space(search.get("space") or {}, parent_run_id)
    target = str(data.get("target") or "label")
    with tempfile.TemporaryDirectory(prefix="trial-report-") as directory:
        manifest = _read_manifest(client, parent_run_id, Path(directory))
        predictions = _read_predictions(client, parent_run_id, Path(directory))
        members = tuple(parent.data.tags[MEMBERS_TAG].split(",")) if MEMBERS_TAG in parent.data.tags else ()
        member_predictions = _read_member_predictions(client, parent_run_id, members, Path(directory))
    return Sweep(
        parent=parent,
        experiment_name=client.get_experiment(parent.info.experiment_id).name,
        config=config,
        metric=metric,
        mode=mode,
        space=space,
        target=target,
        stratify=tuple(data.get("stratify") or [target]),
        balance=tuple(data.get("balance") or ()),
        manifest=manifest,
        predictions=predictions,
        members=members,
        member_predictions=member_predictions,
        trials=tuple(_read_trials(client, parent, metric, space)),
    )


def _read_space(raw: Mapping[str, Any], run_id: str) -> dict[str, Distribution]:
    space = {}
    for name, spec in raw.items():
        try:
            space[name] = Distribution(**spec)
        except ValidationError as error:
            problem = error.errors()[0]["msg"]  # pydantic's full text spans several lines
            raise DataError(f"report: run {run_id}'s {CONFIG_ARTIFACT}: search.space.{name}: {problem}") from None
        except TypeError:
            raise DataError(f"report: run {run_id}'s {CONFIG_ARTIFACT}: search.space.{name} is not a mapping") from None
    return space


def _check_sweep_run(run: Run) -> None:
    role = run.data.tags.get(ROLE_TAG)
    if role == SWEEP_ROLE:
        return
    if role == TRIAL_ROLE and PARENT_TAG in run.data.tags:
        raise ConfigError(
            f"report: run {run.info.run_id} is a trial's run; its sweep is run {run.data.tags[PARENT_TAG]}"
        )
    raise ConfigError(f"report: run {run.info.run_id} is not a sweep's parent run (no tag {ROLE_TAG}=sweep)")


def _artifact_files(client: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    """Paths of every file under `folder` (recursive)."""
    files: list[str] = []
    for info in client.list_artifacts(run_id, folder):
        files.extend(_artifact_files(client, run_id, info.path) if info.is_dir else [info.path])
    return files


def _download(client: MlflowClient, run_id: str, path: str, directory: Path) -> str:
    # MLflow draws a progress bar per file otherwise, which buries the CLI's own output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return client.download_artifacts(run_id, path, str(directory))


def _read_config(client: MlflowClient, run_id: str) -> dict[str, Any]:
    if CONFIG_ARTIFACT not in _artifact_files(client, run_id):
        raise DataError(f"report: run {run_id} has no {CONFIG_ARTIFACT} artifact; was it started by `trial run`?")
    with tempfile.TemporaryDirectory(prefix="trial-report-") as directory:
        path = _download(client, run_id, CONFIG_ARTIFACT, Path(directory))
        return yaml.safe_load(Path(path).read_text()) or {}


def _read_manifest(client: MlflowClient, run_id: str, directory: Path) -> pd.DataFrame | None:
    csvs = [path for path in _artifact_files(client, run_id, MANIFEST_DIR) if path.endswith(".csv")]
    if not csvs:
        return None
    return pd.read_csv(_download(client, run_id, csvs[0], directory))


def _read_predictions(client: MlflowClient, run_id: str, directory: Path) -> dict[str, pd.DataFrame]:
    # By file name, wherever under predictions/ (an older sweep nested them one folder down),
    # except the ensemble members' files, which have the same names.
    found = {
        Path(path).name: path
        for path in _artifact_files(client, run_id, PREDICTIONS_DIR)
        if MEMBERS_DIR not in Path(path).parts[1:-1]
    }
    return {
        split: _read_probabilities(client, run_id, found[probability_file(split)], directory)
        for split in SPLITS
        if probability_file(split) in found
    }


def _read_member_predictions(
    client: MlflowClient, run_id: str, members: Sequence[str], directory: Path
) -> dict[str, pd.DataFrame]:
    if not members:
        return {}  # a sweep without an ensemble: nothing to list
    found = set(_artifact_files(client, run_id, f"{PREDICTIONS_DIR}/{MEMBERS_DIR}"))
    paths = {member: member_probability_artifact(member, "test") for member in members}
    return {
        member: _read_probabilities(client, run_id, path, directory) for member, path in paths.items() if path in found
    }


def _read_probabilities(client: MlflowClient, run_id: str, path: str, directory: Path) -> pd.DataFrame:
    # The true class as text, so it matches the class in its proba_<class> column name.
    return pd.read_csv(_download(client, run_id, path, directory), dtype={TARGET_COLUMN: str})


def _read_trials(
    client: MlflowClient, parent: Run, metric: str, space: Mapping[str, Distribution]
) -> list[TrialRecord]:
    runs = _child_runs(client, parent)
    runs.sort(key=lambda run: (run.info.start_time or 0, run.data.tags.get(TRIAL_ID_TAG, "")))
    distributions = {name: spec.to_optuna() for name, spec in space.items()}
    records = []
    for run in runs:
        params = {}
        for name, distribution in distributions.items():
            value = _param_value(run.data.params.get(name), distribution)
            if value is not None:
                params[name] = value
        history: dict[int, float] = {}
        for point in client.get_metric_history(run.info.run_id, metric):
            history[point.step] = point.value  # an epoch logged twice keeps its last value
        records.append(
            TrialRecord(
                trial_id=run.data.tags.get(TRIAL_ID_TAG, run.info.run_name or run.info.run_id),
                run_id=run.info.run_id,
                status=run.data.tags.get(STATUS_TAG, run.info.status.lower()),
                params=params,
                history=tuple(sorted(history.items())),
            )
        )
    return records


def _child_runs(client: MlflowClient, parent: Run) -> list[Run]:
    return list(_search_runs(client, parent.info.experiment_id, f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"))


def _search_runs(
    client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str] | None = None
) -> Iterator[Run]:
    """Every run the filter matches, page by page, as the caller consumes them."""
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, order_by=order_by, max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


# -- the Optuna study, rebuilt --------------------------------------------------------------


def _param_value(text: str | None, distribution: optuna.distributions.BaseDistribution) -> Any:
    """An MLflow param (text) as its distribution's value; None where it is missing or off the space."""
    if text is None:
        return None
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        for choice in distribution.choices:
            if str(choice) == text:
                return choice
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if isinstance(distribution, optuna.distributions.IntDistribution):
        if not number.is_integer():
            return None
        number = int(number)
    return number if distribution.low <= number <= distribution.high else None


def build_study(sweep: Sweep) -> optuna.Study:
    """An in-memory Optuna study with one trial per child run.

    A trial's value is its best epoch's value of the sweep metric (what Tune ranks by,
    scope="all"); its epochs are the intermediate values. A completed trial without a
    finite value counts as failed, as Optuna itself does with NaN.
    """
    direction = "maximize" if sweep.mode == "max" else "minimize"
    distributions = {name: spec.to_optuna() for name, spec in sweep.space.items()}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(direction=direction, study_name=sweep.name)
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = []
    for record in sweep.trials:
        state = _STATES.get(record.status, optuna.trial.TrialState.FAIL)
        value = record.best(sweep.mode)
        if state == optuna.trial.TrialState.COMPLETE and not math.isfinite(value):
            state = optuna.trial.TrialState.FAIL
        trials.append(
            optuna.trial.create_trial(
                params=record.params,
                distributions={name: distributions[name] for name in record.params},
                value=None if state == optuna.trial.TrialState.FAIL or not math.isfinite(value) else value,
                state=state,
                intermediate_values={step: value for step, value in record.history if math.isfinite(value)},
                user_attrs={"trial_id": record.trial_id},
            )
        )
    study.add_trials(trials)
    return study


# -- the page ----------------------------------------------------------------------------------


def build_report(client: MlflowClient, parent_run_id: str, out_dir: Path) -> Path:
    """Write the sweep's report to `out_dir/report.html` and return its path."""
    sweep = load_sweep(client, parent_run_id)
    sections = [
        _overview_section(sweep),
        _search_section(sweep),
        _splits_section(sweep),
        _best_trial_section(sweep),
        *([_ensemble_section(sweep)] if sweep.members else []),
        _strata_section(sweep),
        _trials_section(sweep),
    ]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_ARTIFACT
    path.write_text(_page(f"Sweep {sweep.name}", sections), encoding="utf-8")
    return path


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
tr.best { font-weight: bold; background: #fff8dc; }
.note { color: #666; font-style: italic; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1em; }
/* auto-fill, not auto-fit: each plot is drawn as its cell is parsed, and with auto-fit a
   lone first cell would span the row, drawing its plot too wide for the final layout. */
.grid > div { min-width: 0; }
"""


def _page(title: str, sections: Iterable[str]) -> str:
    # plotly.js once, in the head; every figure below is a div that calls it.
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_STYLE}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head><body>",
            *sections,
            "</body></html>",
        ]
    )


def _figure(fig: go.Figure, height: int = _FIGURE_HEIGHT) -> str:
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 60, "b": 60})
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        default_height=f"{height}px",
        config={"displaylogo": False, "responsive": True},
    )


def _section(title: str, *blocks: str) -> str:
    return "\n".join([f"<section><h2>{_esc(title)}</h2>", *blocks, "</section>"])


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _grid(blocks: Sequence[str]) -> str:
    return '<div class="grid">' + "\n".join(f"<div>{block}</div>" for block in blocks) + "</div>"


def _table(frame: pd.DataFrame, row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_esc(column)}</th>" for column in frame.columns)
    rows = []
    for index, values in enumerate(frame.itertuples(index=False)):
        css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{_esc(_fmt(value))}</td>" for value in values) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


# -- section 0: what this sweep is -------------------------------------------------------------


def _overview_section(sweep: Sweep) -> str:
    info = sweep.parent.info
    facts = pd.DataFrame(
        [
            ("experiment", sweep.experiment_name),
            ("parent run", info.run_id),
            ("status", info.status),  # as MLflow spells it: FINISHED, FAILED, KILLED, RUNNING
            ("metric", f"{sweep.metric} ({sweep.mode})"),
            ("trials", _status_counts(sweep.trials)),
            ("best trial", sweep.best_trial_id or "none recorded"),
            *((f"best {name}", sweep.parent.data.params.get(name, "—")) for name in sweep.space),
        ],
        columns=["", "value"],
    )
    blocks = [f"<h1>Sweep {_esc(sweep.name)}</h1>", _table(facts)]
    metrics = sweep.parent.data.metrics
    rows = [
        [split, *(metrics.get(f"{split}/{name}", math.nan) for name in METRIC_NAMES)]
        for split in ("valid", "test")
        if any(f"{split}/{name}" in metrics for name in METRIC_NAMES)
    ]
    if rows:
        blocks += ["<h3>Best trial's metrics</h3>", _table(pd.DataFrame(rows, columns=["split", *METRIC_NAMES]))]
    return "\n".join(blocks)


def _status_counts(trials: Sequence[TrialRecord]) -> str:
    counts = pd.Series([trial.status for trial in trials], dtype=object).value_counts()
    return f"{len(trials)}: " + ", ".join(f"{count} {status}" for status, count in counts.items()) if trials else "0"


# -- section 1: the search ----------------------------------------------------------------------


def _search_section(sweep: Sweep) -> str:
    title = "1. Optimization history and parameter importance"
    if not sweep.trials:
        return _section(title, _note("No child runs: no trial of this sweep was recorded."))
    study = build_study(sweep)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    blocks = [_history_block(sweep)]
    if any(_finite_history(trial) for trial in sweep.trials):
        blocks.append(_figure(_learning_curves_figure(sweep)))
    blocks.append(_importance_block(study, sweep, len(complete)))
    return _section(title, *blocks)


# Marker and colour per trial status in the history plot; any other status (a run without
# trial.status: running, killed) gets _OTHER_STYLE.
_STATUS_STYLES = {"completed": ("circle", "#1f77b4"), "pruned": ("x", "#ff7f0e"), "error": ("diamond", "#d62728")}
_OTHER_STYLE = ("square", "#7f7f7f")


def _history_value(trial: TrialRecord, mode: str) -> float:
    """A completed trial's value is its best epoch's (what Tune ranks and the study holds);
    a pruned or failed trial's is the last value it reported before it stopped."""
    return trial.best(mode) if trial.status == "completed" else trial.final


def _history_block(sweep: Sweep) -> str:
    """Every trial with a value, marked by status: Optuna's own plot shows completed trials
    only, which under ASHA can be two points of eight."""
    by_status: dict[str, list[tuple[int, TrialRecord, float]]] = {}
    unplotted = []
    for number, trial in enumerate(sweep.trials):
        value = _history_value(trial, sweep.mode)
        if math.isfinite(value):
            by_status.setdefault(trial.status, []).append((number, trial, value))
        else:
            unplotted.append(f"{trial.trial_id} ({trial.status})")
    blocks = []
    if by_status:
        blocks.append(_figure(_history_figure(sweep, by_status)))
    if unplotted:
        blocks.append(_note(f"Not in the optimization history, no finite {sweep.metric}: {', '.join(unplotted)}."))
    return "\n".join(blocks)


def _history_figure(sweep: Sweep, by_status: Mapping[str, list[tuple[int, TrialRecord, float]]]) -> go.Figure:
    fig = go.Figure()
    order = [status for status in _STATUS_STYLES if status in by_status] + sorted(set(by_status) - set(_STATUS_STYLES))
    for status in order:
        points = by_status[status]
        symbol, colour = _STATUS_STYLES.get(status, _OTHER_STYLE)
        fig.add_scatter(
            x=[number for number, _, _ in points],
            y=[value for _, _, value in points],
            mode="markers",
            name=status if status == "completed" else f"{status} (last reported value)",
            marker={"symbol": symbol, "color": colour, "size": 9},
            customdata=[[trial.trial_id, len(trial.history)] for _, trial, _ in points],
            hovertemplate=f"%{{customdata[0]}} (#%{{x}}), {status} after %{{customdata[1]}} epochs: %{{y:.4f}}<extra></extra>",
        )
    completed = by_status.get("completed", [])
    if completed:
        pick = max if sweep.mode == "max" else min
        best = list(itertools.accumulate((value for _, _, value in completed), pick))
        fig.add_scatter(
            x=[number for number, _, _ in completed],
            y=best,
            mode="lines",
            line={"shape": "hv", "color": _STATUS_STYLES["completed"][1]},
            name="best so far (completed)",
        )
    fig.update_layout(
        title=f"Optimization history: {sweep.metric} of every trial",
        xaxis={"title": "trial # (start order)", "rangemode": "tozero", **_whole_number_ticks(len(sweep.trials))},
        yaxis_title=sweep.metric,
        showlegend=True,
    )
    return fig


def _whole_number_ticks(count: int) -> dict[str, int]:
    """Axis ticks on whole numbers (trial numbers, epochs), about ten of them at most."""
    return {"tick0": 0, "dtick": max(1, math.ceil(count / 10))}


def _finite_history(trial: TrialRecord) -> list[tuple[int, float]]:
    return [(epoch, value) for epoch, value in trial.history if math.isfinite(value)]


def _learning_curves_figure(sweep: Sweep) -> go.Figure:
    """One line per trial, named in the legend; trials that did not complete are dotted."""
    fig = go.Figure()
    for trial in sweep.trials:
        points = _finite_history(trial)
        if not points:
            continue
        fig.add_scatter(
            x=[epoch for epoch, _ in points],
            y=[value for _, value in points],
            mode="lines+markers",
            name=f"{trial.trial_id} ({trial.status})",
            line={"dash": "solid" if trial.status == "completed" else "dot"},
            hovertemplate=f"{trial.trial_id}, epoch %{{x}}: %{{y:.4f}}<extra></extra>",
        )
    fig.update_layout(
        title=f"{sweep.metric} per epoch (pruned trials stop early)",
        xaxis={"title": "epoch", **_whole_number_ticks(max((len(trial.history) for trial in sweep.trials), default=1))},
        yaxis_title=sweep.metric,
        legend_title_text="trial",
        showlegend=True,  # plotly hides the legend of a single line, and with it the trial's id
    )
    return fig


def _importance_block(study: optuna.Study, sweep: Sweep, n_complete: int) -> str:
    if not sweep.space:
        return _note("Parameter importance: nothing was searched (search.space is empty).")
    if n_complete < 2:
        return _note(f"Parameter importance needs at least 2 completed trials; this sweep has {n_complete}.")
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        fig = optuna.visualization.plot_param_importances(study, evaluator=evaluator, target_name=sweep.metric)
    except (ValueError, RuntimeError) as error:  # e.g. every completed trial holds the same value
        return _note(f"Parameter importance could not be computed: {error}")
    return _figure(fig)


# -- section 2: the split manifest ------------------------------------------------------------------


def _splits_section(sweep: Sweep) -> str:
    title = "2. Split manifest: shares of each stratify column per split"
    manifest = sweep.manifest
    if manifest is None or "split" not in manifest.columns:
        return _section(title, _note("No manifest artifact (manifest/manifest-<hash>.csv) on the parent run."))
    columns = [column for column in sweep.stratify if column in manifest.columns]
    missing = [column for column in sweep.stratify if column not in manifest.columns]
    counts = manifest["split"].value_counts()
    sizes = ", ".join(f"{split} {counts[split]}" for split in _splits_in(manifest["split"]))
    blocks = [f"<p>Rows per split: {_esc(sizes)}.</p>"]
    if missing:
        blocks.append(_note(f"Not in the manifest: {', '.join(missing)}."))
    figures = [_share_figure(manifest[column].astype(str), manifest["split"], column) for column in columns]
    if len(columns) > 1:
        joint = manifest[columns].astype(str).agg(" | ".join, axis=1)
        figures.append(_share_figure(joint, manifest["split"], " × ".join(columns)))
    blocks.append(_grid(figures))
    return _section(title, *blocks)


def _splits_in(split: pd.Series) -> list[str]:
    present = set(split.unique())
    return [name for name in SPLITS if name in present] + sorted(present - set(SPLITS))


def _share_figure(values: pd.Series, split: pd.Series, name: str) -> str:
    counts = pd.crosstab(values, split)
    order = counts.sum(axis=1).sort_values(ascending=False).index
    counts = counts.loc[order]
    shares = counts / counts.sum(axis=0)
    fig = go.Figure()
    for split_name in _splits_in(split):
        fig.add_bar(
            name=split_name,
            x=list(counts.index),
            y=shares[split_name],
            customdata=counts[split_name],
            hovertemplate="%{x}: %{y:.1%} (%{customdata} rows)",
        )
    fig.update_layout(barmode="group", title=f"{name}: share per split", yaxis_tickformat=".0%", xaxis_type="category")
    return _figure(fig)


# -- section 3: the best trial on test and valid --------------------------------------------------------


@dataclass(frozen=True)
class _Scored:
    """One split's predictions as arrays: class names, true class indices, probabilities."""

    classes: list[str]
    y: np.ndarray
    proba: np.ndarray


def scored(frame: pd.DataFrame) -> _Scored:
    """Class names (from the proba_<class> columns), true class indices and probabilities."""
    columns = [column for column in frame.columns if column.startswith(PROBA_PREFIX)]
    classes = [column.removeprefix(PROBA_PREFIX) for column in columns]
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(frame[TARGET_COLUMN].astype(str)) - set(index))
    if unknown:
        raise DataError(f"report: predictions hold target {unknown[0]!r} but no column {proba_column(unknown[0])}")
    y = frame[TARGET_COLUMN].astype(str).map(index).to_numpy(np.int64)
    return _Scored(classes, y, frame[columns].to_numpy(np.float64))


def _best_trial_section(sweep: Sweep) -> str:
    title = f"3. Best trial ({sweep.best_trial_id or 'unknown'}) on the test and valid splits"
    blocks = []
    for split in ("test", "valid"):
        frame = sweep.predictions.get(split)
        if frame is None or frame.empty:
            blocks.append(_note(f"No {split} predictions ({probability_artifact(split)}) on the parent run."))
            continue
        data = scored(frame)
        blocks.append(f"<h3>{split} ({len(frame)} rows)</h3>")
        if not np.isfinite(data.proba).all():
            blocks.append(_note("The probabilities hold NaN or inf (a diverged model): nothing to plot."))
            continue
        figures = [_confusion_figure(data, split), _roc_figure(data, split), _reliability_figure(data, split)]
        blocks.append(_grid(figures))
    return _section(title, *blocks)


def _confusion_figure(data: _Scored, split: str) -> str:
    matrix = confusion_matrix(data.y, data.proba.argmax(axis=1), labels=range(len(data.classes)))
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=data.classes,
            y=data.classes,
            text=matrix,
            texttemplate="%{text}",
            colorscale="Blues",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Confusion matrix ({split})",
        xaxis={"title": "predicted", "type": "category"},
        yaxis={"title": "true", "type": "category", "autorange": "reversed"},
    )
    return _figure(fig)


# The ensemble's ROC colours its curves by class, so a member's curve shares its ensemble curve's colour.
_CLASS_COLOURS = plotly.colors.qualitative.Plotly


def _roc_figure(data: _Scored, split: str, members: Mapping[str, _Scored] | None = None) -> str:
    """ROC curves of `data`; with `members`, `data` is their ensemble's: its curve thick and
    each member's thin, in one colour and legend group per class."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "grey"}, name="chance")
    # Binary: the positive class is the second, as in trial.metrics; multiclass: one-vs-rest.
    positives = [1] if len(data.classes) == 2 else range(len(data.classes))
    for c in positives:
        if members is None:
            _add_roc_curve(fig, data, c, data.classes[c])
            continue
        # The class titles its legend group, so the entries stay short enough to leave the plot its width.
        group = {
            "legendgroup": data.classes[c],
            "legendgrouptitle_text": f"class {data.classes[c]}",
            "line_color": _CLASS_COLOURS[c % len(_CLASS_COLOURS)],
        }
        _add_roc_curve(fig, data, c, "ensemble", line_width=3, **group)
        for name, member in members.items():
            _add_roc_curve(fig, member, c, name, line_width=1, opacity=0.6, **group)
    kind = f"positive class {data.classes[1]}" if len(data.classes) == 2 else "one-vs-rest"
    fig.update_layout(
        title=f"{'ROC' if members is None else 'Ensemble ROC'} ({split}, {kind})",
        xaxis={"title": "false positive rate", "range": [0, 1]},
        yaxis={"title": "true positive rate", "range": [0, 1.02]},
    )
    return _figure(fig)


def _add_roc_curve(fig: go.Figure, data: _Scored, c: int, name: str, **style: Any) -> None:
    """Class `c`'s one-vs-rest ROC curve, its AUC in the legend; none where it is undefined."""
    truth = data.y == c
    if truth.all() or not truth.any():
        return  # one-vs-rest is undefined for a class that is every row or none
    fpr, tpr, _ = roc_curve(truth, data.proba[:, c])
    auc = roc_auc_score(truth, data.proba[:, c])
    fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUC {auc:.3f})", **style)


def _reliability_figure(data: _Scored, split: str) -> str:
    # The same top-class confidence and bins as the ECE in trial.metrics, so the title's
    # number is the one MLflow holds.
    ece = classification_metrics(data.y, data.proba)["ece"]
    confidence = data.proba.max(axis=1)
    correct = (data.proba.argmax(axis=1) == data.y).astype(np.float64)
    bins = np.clip(np.ceil(confidence * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)
    count = np.bincount(bins, minlength=ECE_BINS)
    filled = count > 0
    accuracy = np.bincount(bins, weights=correct, minlength=ECE_BINS)[filled] / count[filled]
    mean_confidence = np.bincount(bins, weights=confidence, minlength=ECE_BINS)[filled] / count[filled]
    centers = (np.arange(ECE_BINS)[filled] + 0.5) / ECE_BINS
    fig = go.Figure()
    fig.add_bar(
        x=centers,
        y=accuracy,
        width=1 / ECE_BINS,
        name="accuracy",
        customdata=np.column_stack([count[filled], mean_confidence]),
        hovertemplate="accuracy %{y:.3f}, mean confidence %{customdata[1]:.3f}, %{customdata[0]} rows<extra></extra>",
    )
    fig.add_scatter(x=mean_confidence, y=mean_confidence, mode="markers", name="mean confidence")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "grey"}, name="perfect")
    fig.update_layout(
        title=f"Reliability ({split}): ECE = {ece:.4f}",
        xaxis={"title": f"top-class confidence ({ECE_BINS} bins)", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1]},
    )
    return _figure(fig)


# -- section 3b: the ensemble of the best trial's members ------------------------------------------------

ENSEMBLE_ROW = "ensemble (mean probability)"
VOTE_ROW = "majority vote"
# What a sweep trained one member per, by the parts of the member labels (trial.runs.member_label).
_MEMBER_KINDS = {
    frozenset({"fold"}): "cross-validation fold (search.cv)",
    frozenset({"seed"}): "seed (search.repeats)",
    frozenset({"fold", "seed"}): "fold and seed (search.cv and search.repeats)",
}


def _ensemble_section(sweep: Sweep) -> str:
    title = "3b. Ensemble of the best trial's members on the test split"
    parts = frozenset(part.rstrip(string.digits) for member in sweep.members for part in member.split("-"))
    kind = _MEMBER_KINDS.get(parts, "member")
    blocks = [
        _note(
            f"The best trial trained {len(sweep.members)} members, one per {kind}: {', '.join(sweep.members)}. "
            "The sweep's test/<metric> are the ensemble's, the mean of the members' probabilities; "
            "the majority vote has no probabilities, so it has only accuracy and f1_macro."
        )
    ]
    metrics = sweep.parent.data.metrics
    spread = [f"{name} {metrics[f'valid/{name}_std']:.4g}" for name in METRIC_NAMES if f"valid/{name}_std" in metrics]
    if spread:
        note = f"The valid metrics above are the members' mean; their standard deviations: {', '.join(spread)}."
        blocks.append(_note(note))
    if "fold" in parts:
        blocks.append(_note("The valid predictions above are out-of-fold: each row by the member that held it out."))
    missing = [member for member in sweep.members if member not in sweep.member_predictions]
    if missing:
        blocks.append(_note(f"No test predictions on the parent run for: {', '.join(missing)}."))
    table = ensemble_metrics(sweep)
    blocks.append(_table(table, ["best" if name == ENSEMBLE_ROW else "" for name in table["model"]]))
    test = sweep.predictions.get("test")
    if test is None or test.empty:
        return _section(title, *blocks, _note(f"No test predictions ({probability_artifact('test')}): no ROC."))
    ensemble = scored(test)
    members = {member: scored(frame) for member, frame in sweep.member_predictions.items()}
    if not all(np.isfinite(data.proba).all() for data in (ensemble, *members.values())):
        return _section(title, *blocks, _note("The test probabilities hold NaN or inf (a diverged model): no ROC."))
    return _section(title, *blocks, _grid([_roc_figure(ensemble, "test", members)]))


def ensemble_metrics(sweep: Sweep) -> pd.DataFrame:
    """One row for the ensemble, one for its majority vote, one per member: the test metrics
    the parent run holds (blank where it holds none), and the AUROC per value of the first
    stratify column besides the target (`auroc hos=A`), computed from the prediction CSVs."""
    metrics = sweep.parent.data.metrics
    rows = [
        (ENSEMBLE_ROW, "test", sweep.predictions.get("test")),
        (VOTE_ROW, f"test/{VOTE}", None),  # a vote has no probabilities to rank
        *((member, f"test/{member}", sweep.member_predictions.get(member)) for member in sweep.members),
    ]
    # The target's own values would each hold a single class: no AUROC.
    column = next((column for column in sweep.stratify if column != sweep.target), None)
    aurocs = {
        name: {}
        if frame is None or column not in frame.columns
        else metrics_by_value(frame, column).set_index(column)["auroc"].to_dict()
        for name, _, frame in rows
    }
    values = sorted(set().union(*aurocs.values()))
    return pd.DataFrame(
        [
            {
                "model": name,
                **{metric: metrics.get(f"{prefix}/{metric}", math.nan) for metric in METRIC_NAMES},
                **{f"auroc {column}={value}": aurocs[name].get(value, math.nan) for value in values},
            }
            for name, prefix, _ in rows
        ]
    )


# -- section 4: metrics per stratum value -------------------------------------------------------------


def metrics_by_value(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Count, accuracy and AUROC of one split's predictions per value of `column`.

    AUROC is NaN for a value whose rows hold a single class.
    """
    rows = []
    for value, group in frame.groupby(frame[column].astype(str), sort=True):
        data = scored(group)
        metrics = classification_metrics(data.y, data.proba)
        rows.append((value, len(group), metrics["accuracy"], metrics["auroc"]))
    return pd.DataFrame(rows, columns=[column, "count", "accuracy", "auroc"])


def _strata_section(sweep: Sweep) -> str:
    title = "4. Test metrics per stratum value"
    test = sweep.predictions.get("test")
    if test is None or test.empty:
        return _section(title, _note(f"No test predictions ({probability_artifact('test')}) on the parent run."))
    # The target's own per-class view is the confusion matrix above.
    columns = [column for column in dict.fromkeys((*sweep.stratify, *sweep.balance)) if column != sweep.target]
    if not columns:
        return _section(title, _note("No stratify or balance column besides the target."))
    if not np.isfinite(test.filter(like=PROBA_PREFIX).to_numpy(np.float64)).all():
        return _section(title, _note("The test probabilities hold NaN or inf (a diverged model)."))
    blocks = []
    for column in columns:
        if column not in test.columns:
            blocks.append(_note(f"{column}: not in the test predictions."))
            continue
        table = metrics_by_value(test, column)
        blocks.append(f"<h3>{_esc(column)}</h3>")
        blocks.append(_grid([_table(table), _strata_figure(table, column)]))
    return _section(title, *blocks)


def _strata_figure(table: pd.DataFrame, column: str) -> str:
    fig = go.Figure()
    for metric in ("accuracy", "auroc"):
        fig.add_bar(
            name=metric,
            x=table[column],
            y=table[metric],
            customdata=table["count"],
            hovertemplate="%{x}: %{y:.3f} (%{customdata} rows)",
        )
    fig.update_layout(
        barmode="group", title=f"Test accuracy and AUROC per {column}", xaxis_type="category", yaxis_range=[0, 1]
    )
    return _figure(fig)


# -- section 5: every trial -------------------------------------------------------------------------------


def _trials_section(sweep: Sweep) -> str:
    title = "5. All trials"
    if not sweep.trials:
        return _section(title, _note("No child runs."))
    best_id = sweep.best_trial_id
    rows = [
        {
            "#": number,
            "trial id": trial.trial_id,
            "status": trial.status,
            **{name: trial.params.get(name, "—") for name in sweep.space},
            f"final {sweep.metric}": trial.final,
            f"best {sweep.metric}": trial.best(sweep.mode),
            "epochs": len(trial.history),
        }
        for number, trial in enumerate(sweep.trials)
    ]
    marks = ["best" if trial.trial_id == best_id else "" for trial in sweep.trials]
    note = _note("# is the trial's number in the optimization history above; the best trial's row is in bold.")
    return _section(title, note, _table(pd.DataFrame(rows), marks))


# -- logging the report, and the `trial report` command --------------------------------------------------


def log_report(client: MlflowClient, parent_run_id: str, *, fallback: Path, out: Path | None = None) -> Path:
    """Build the sweep's report, log it on its parent run as report.html, and return a local
    path a person can open: `out` where given; else the logged file itself where the run's
    artifacts are local files (a sqlite store keeps them in mlruns/ beside it); else a copy
    at `fallback`, since a tracking server's artifact store is no path to open.
    """
    with tempfile.TemporaryDirectory(prefix="trial-report-") as directory:
        built = build_report(client, parent_run_id, Path(directory))
        client.log_artifact(parent_run_id, str(built))
        logged = _local_artifacts(client.get_run(parent_run_id))
        if out is None and logged is not None and (logged / REPORT_ARTIFACT).is_file():
            return logged / REPORT_ARTIFACT
        path = out or fallback
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, path)
        return path


def _local_artifacts(run: Run) -> Path | None:
    """The run's artifact folder where it is a local path or file: URI, else None."""
    uri = urllib.parse.urlparse(run.info.artifact_uri)
    if uri.scheme not in ("", "file") or uri.netloc not in ("", "localhost"):
        return None
    return Path(urllib.request.url2pathname(uri.path))


def log_sweep_report(client: MlflowClient, parent_run_id: str, tracking_uri: str, fallback: Path) -> Path | None:
    """`log_report` at the end of a sweep: one that fails is a warning naming the command
    that rebuilds it, not a failed sweep, whose results are all recorded by then."""
    try:
        return log_report(client, parent_run_id, fallback=fallback)
    except Exception as error:  # whatever broke, the trials' hours of results stay a success
        warnings.warn(
            f"{REPORT_ARTIFACT} was not built: {first_line(error)}; "
            f"rebuild it with: trial report {parent_run_id} --tracking-uri {tracking_uri}"
        )
        return None


def report_command(
    target: str, tracking_uri: str, out_dir: Path | None = None, *, debug: bool = False
) -> tuple[Run, Path]:
    """Build the report of a sweep and log it on its parent run as `report.html`.

    `target` is an MLflow experiment name (its newest sweep, debug or not as `debug`
    says) or a parent run id. Returns the parent run and the report's local path:
    `out_dir`/report.html, else the logged file where the artifacts are local, else
    ./report-<run id>.html.
    """
    client = store_client(tracking_uri)
    parent_id = resolve_target(client, target, tracking_uri, debug=debug)
    path = log_report(
        client,
        parent_id,
        fallback=Path.cwd() / f"report-{parent_id}.html",
        out=Path(out_dir) / REPORT_ARTIFACT if out_dir is not None else None,
    )
    return client.get_run(parent_id), path


def describe_parent(run: Run) -> str:
    """One line naming the parent run a report was built from."""
    info = run.info
    kind = "debug sweep" if _is_debug(run) else "sweep"
    started = datetime.fromtimestamp(info.start_time / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{kind} {info.run_name!r}: parent run {info.run_id}, started {started}, {info.status}"


def _is_debug(run: Run) -> bool:
    return run.data.tags.get(DEBUG_TAG) == "true"


def resolve_target(client: MlflowClient, target: str, tracking_uri: str, *, debug: bool = False) -> str:
    """The parent run id named by `target`: an experiment (its newest sweep, debug ones
    only with `debug`, others only without) or a run id, debug or not."""
    try:
        experiment = client.get_experiment_by_name(target)
    except MlflowException as error:
        raise ConfigError(f"report: cannot use tracking uri {tracking_uri!r}: {first_line(error)}") from None
    if experiment is not None and experiment.lifecycle_stage != "deleted":
        return _newest_sweep(client, experiment.experiment_id, f"experiment {target!r} in {tracking_uri}", debug)
    try:
        run = client.get_run(target)
    except MlflowException:
        run = None
    if run is None or run.info.lifecycle_stage == "deleted":
        raise ConfigError(f"report: no experiment or run named {target!r} in {tracking_uri}")
    _check_sweep_run(run)
    return run.info.run_id


def _newest_sweep(client: MlflowClient, experiment_id: str, where: str, debug: bool) -> str:
    skipped = False
    sweeps = _search_runs(client, experiment_id, f"tags.`{ROLE_TAG}` = 'sweep'", ["attributes.start_time DESC"])
    for run in sweeps:
        if _is_debug(run) == debug:
            return run.info.run_id
        skipped = True
    if not skipped:
        raise ConfigError(f"report: {where} has no sweep run (tag {ROLE_TAG}=sweep)")
    if debug:
        raise ConfigError(f"report: {where} has no debug sweep (tag {DEBUG_TAG}=true); drop --debug for its newest sweep")
    raise ConfigError(f"report: {where} has only debug sweeps (tag {DEBUG_TAG}=true); add --debug to report the newest one")
