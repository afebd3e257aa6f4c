"""The sweep report, built from a small real MLflow store written the way a sweep writes it."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from plotly.offline import get_plotlyjs

from trial.errors import ConfigError, DataError
from trial.metrics import METRIC_NAMES, classification_metrics
from trial.cli import main
from trial.report import (
    build_report,
    build_study,
    load_sweep,
    log_report,
    log_sweep_report,
    metrics_by_value,
    report_command,
    resolve_target,
)

HEADINGS = (
    "1. Optimization history and parameter importance",
    "2. Split manifest",
    "3. Best trial",
    "4. Test metrics per stratum value",
    "5. All trials",
)
FIGURE_DIV = 'class="plotly-graph-div"'
SPACE = {
    "lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
    "channels": {"type": "int", "low": 4.0, "high": 32.0},
    "dropout": {"type": "choice", "values": [0.0, 0.25]},
}
# (trial id, status, lr, channels, dropout, valid/auroc per epoch)
TRIALS = (
    ("abc_00000", "completed", 1.0e-3, 8, 0.0, [0.60, 0.70, 0.75, 0.74]),
    ("abc_00001", "completed", 5.0e-3, 16, 0.25, [0.65, 0.80, 0.82, 0.81]),
    ("abc_00002", "pruned", 2.0e-4, 4, 0.0, [0.55, 0.58]),
    ("abc_00003", "error", 9.0e-3, 32, 0.25, [0.50]),
)
BEST_TRIAL = "abc_00001"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str]:
    """One sqlite store for the module: creating its tables takes seconds."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri), uri


def _experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    # As tracking.py creates a sweep's experiment: artifacts in mlruns/ beside the sqlite file,
    # not in the working directory the tests run from.
    return client.create_experiment(name, artifact_location=_mlruns(client).as_uri())


def _mlruns(client: MlflowClient) -> Path:
    return Path(client.tracking_uri.removeprefix("sqlite:///")).parent / "mlruns"


def _manifest(classes: list[int], rng: np.random.Generator, n: int = 300) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [f"rec_{i}.npy" for i in range(n)],
            "label": rng.choice(classes, size=n),
            "hos": rng.choice(["A", "B", "C"], size=n),
            "age_group": rng.choice(["young", "old"], size=n),
            "split": rng.choice(["train", "valid", "test"], size=n, p=[0.7, 0.15, 0.15]),
        }
    )


def _probabilities(manifest: pd.DataFrame, split: str, classes: list[int], rng: np.random.Generator) -> pd.DataFrame:
    rows = manifest.index[manifest["split"] == split]
    part = manifest.loc[rows]
    logits = rng.normal(size=(len(part), len(classes)))
    logits[np.arange(len(part)), part["label"].map(classes.index)] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"row": rows, "hos": part["hos"].to_numpy(), "label": part["label"].to_numpy()})
    frame["age_group"] = part["age_group"].to_numpy()
    frame["target"] = part["label"].to_numpy()
    for index, value in enumerate(classes):
        frame[f"proba_{value}"] = proba[:, index]
    return frame


def _config(name: str, space: dict) -> dict:
    return {
        "name": name,
        "seed": 42,
        "data": {"target": "label", "stratify": ["label", "hos"], "balance": ["label", "age_group"], "group": None},
        "solver": {"name": "tabular_mlp", "params": {"epochs": 4, "lr": 1.0e-3, "channels": 8, "dropout": 0.0}},
        "search": {"metric": "valid/auroc", "mode": "max", "space": space},
    }


def make_sweep(
    client: MlflowClient,
    tmp_path: Path,
    experiment: str,
    *,
    classes: list[int] = [0, 1],
    trials: tuple = TRIALS,
    space: dict = SPACE,
    predictions: bool = True,
    nested: bool = False,
    seed: int = 0,
    debug: bool = False,
) -> str:
    """A parent run and its child runs, as the sweep and tracking write them; returns the parent id."""
    rng = np.random.default_rng(seed)
    experiment_id = _experiment(client, experiment)
    common_tags = {"debug": "true"} if debug else {}
    run_name = f"{experiment}-debug" if debug else experiment
    parent = client.create_run(experiment_id, run_name=run_name, tags={"trial.role": "sweep", **common_tags}).info.run_id
    client.log_text(parent, yaml.safe_dump(_config(experiment, space), sort_keys=False), "config.yaml")
    client.log_param(parent, "search.metric", "valid/auroc")
    manifest = _manifest(classes, rng)
    folder = tmp_path / f"artifacts-{parent}"
    (folder / "predictions").mkdir(parents=True)
    manifest.to_csv(folder / "manifest-0123abcd.csv", index=False)
    client.log_artifact(parent, str(folder / "manifest-0123abcd.csv"), "manifest")
    if predictions:
        for split in ("train", "valid", "test"):
            path = folder / "predictions" / f"{split}_probability.csv"
            _probabilities(manifest, split, classes, rng).to_csv(path, index=False)
        if nested:  # client.log_artifact(directory, "predictions") keeps the folder's own name
            client.log_artifact(parent, str(folder / "predictions"), "predictions")
        else:
            client.log_artifacts(parent, str(folder / "predictions"), "predictions")

    for trial_id, status, lr, channels, dropout, history in trials:
        tags = {"mlflow.parentRunId": parent, "trial.role": "trial", "trial.trial_id": trial_id, **common_tags}
        run = client.create_run(experiment_id, run_name=trial_id, tags=tags).info.run_id
        for key, value in {"lr": lr, "channels": channels, "dropout": dropout, "search.metric": "valid/auroc"}.items():
            client.log_param(run, key, str(value))
        for epoch, value in enumerate(history, start=1):
            client.log_metric(run, "valid/auroc", value, step=epoch)
            client.log_metric(run, "train/loss", 1.0 / epoch, step=epoch)
        client.set_tag(run, "trial.status", status)
        client.set_tag(run, "trial.pruned", str(status == "pruned").lower())
        client.set_terminated(run, "FAILED" if status == "error" else "FINISHED")

    client.set_tag(parent, "trial.best_trial_id", BEST_TRIAL)
    for key, value in {"lr": "0.005", "channels": "16", "dropout": "0.25"}.items():
        client.log_param(parent, key, value)
    for name in METRIC_NAMES:
        client.log_metric(parent, f"valid/{name}", 0.8)
        client.log_metric(parent, f"test/{name}", 0.7)
    client.set_terminated(parent, "FINISHED")
    return parent


@pytest.fixture(scope="module")
def binary_report(store, tmp_path_factory) -> tuple[str, str]:
    client, _ = store
    tmp_path = tmp_path_factory.mktemp("binary")
    parent = make_sweep(client, tmp_path, "binary")
    path = build_report(client, parent, tmp_path / "out")
    assert path == tmp_path / "out" / "report.html"
    return parent, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def multiclass_report(store, tmp_path_factory) -> tuple[str, str]:
    client, _ = store
    tmp_path = tmp_path_factory.mktemp("multiclass")
    parent = make_sweep(client, tmp_path, "multiclass", classes=[0, 1, 2], seed=1)
    return parent, build_report(client, parent, tmp_path / "out").read_text(encoding="utf-8")


def figures(page: str) -> dict[str, dict[str, Any]]:
    """Each figure on the page as plotly.js receives it ({data, layout}), by its title."""
    decoder = json.JSONDecoder()
    body = page[page.index("</head>") :]  # the embedded plotly.js library is in the head
    found = {}
    for call in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', body):
        data, end = decoder.raw_decode(body, call.end())
        layout, _ = decoder.raw_decode(body, re.compile(r",\s*").match(body, end).end())
        found[layout["title"]["text"]] = {"data": [_plain(trace) for trace in data], "layout": layout}
    return found


def _plain(trace: dict[str, Any]) -> dict[str, Any]:
    """x and y as lists: plotly writes numpy arrays as base64 typed arrays."""
    trace = dict(trace)
    for key in ("x", "y"):
        value = trace.get(key)
        if isinstance(value, dict) and "bdata" in value:
            trace[key] = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return trace


def _traces(figure: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {trace["name"]: trace for trace in figure["data"]}


HISTORY = "Optimization history: valid/auroc of every trial"
CURVES = "valid/auroc per epoch (pruned trials stop early)"


# -- the page -------------------------------------------------------------------------------


def test_every_section_heading_is_there(binary_report) -> None:
    parent, page = binary_report
    for heading in HEADINGS:
        assert f"<h2>{heading}" in page
    assert parent in page
    assert "Sweep binary" in page


def test_figures_per_section(binary_report) -> None:
    _, page = binary_report
    # 1: history, learning curves, importance; 2: label, hos, label x hos;
    # 3: confusion, ROC, reliability on test and on valid; 4: hos, age_group.
    assert page.count(FIGURE_DIV) == 3 + 3 + 6 + 2
    assert {HISTORY, CURVES} <= set(figures(page))
    assert page.count("Hyperparameter Importances") == 1
    assert "Confusion matrix (test)" in page and "Confusion matrix (valid)" in page
    assert "ROC (test, positive class 1)" in page
    assert "Reliability (test): ECE = " in page


def test_the_overview_shows_the_parents_status_as_mlflow_spells_it(binary_report) -> None:
    _, page = binary_report
    assert "<td>status</td><td>FINISHED</td>" in page


def test_history_shows_every_trial_marked_by_its_status(binary_report) -> None:
    # TRIALS by hand: #0 completed, best epoch 0.75; #1 completed, best 0.82; #2 pruned,
    # last reported 0.58; #3 failed (error), last reported 0.50.
    figure = figures(binary_report[1])[HISTORY]
    traces = _traces(figure)
    assert list(traces) == [
        "completed",
        "pruned (last reported value)",
        "error (last reported value)",
        "best so far (completed)",
    ]
    assert (traces["completed"]["x"], traces["completed"]["y"]) == ([0, 1], [0.75, 0.82])
    assert (traces["pruned (last reported value)"]["x"], traces["pruned (last reported value)"]["y"]) == ([2], [0.58])
    assert (traces["error (last reported value)"]["x"], traces["error (last reported value)"]["y"]) == ([3], [0.50])
    assert traces["best so far (completed)"]["y"] == [0.75, 0.82]
    symbols = [traces[name]["marker"]["symbol"] for name in list(traces)[:3]]
    colours = [traces[name]["marker"]["color"] for name in list(traces)[:3]]
    assert len(set(symbols)) == 3 and len(set(colours)) == 3
    assert figure["layout"]["yaxis"]["title"]["text"] == "valid/auroc"
    assert figure["layout"]["xaxis"]["title"]["text"] == "trial # (start order)"
    assert figure["layout"]["showlegend"] is True


def test_learning_curves_name_each_trial_and_the_metric(binary_report) -> None:
    figure = figures(binary_report[1])[CURVES]
    traces = _traces(figure)
    assert list(traces) == [
        "abc_00000 (completed)",
        "abc_00001 (completed)",
        "abc_00002 (pruned)",
        "abc_00003 (error)",
    ]
    assert [traces[name]["x"] for name in traces] == [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2], [1]]
    assert traces["abc_00002 (pruned)"]["y"] == [0.55, 0.58]
    assert figure["layout"]["yaxis"]["title"]["text"] == "valid/auroc"
    assert figure["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert figure["layout"]["showlegend"] is True and figure["layout"]["legend"]["title"]["text"] == "trial"


def test_a_mostly_pruned_sweep_plots_every_trial_with_a_value(store, tmp_path: Path) -> None:
    # The demo's case: ASHA pruned 6 of 8 trials. One more failed before any epoch.
    trials = (
        ("d_00000", "pruned", 1e-3, 8, 0.0, [0.60]),
        ("d_00001", "completed", 2e-3, 8, 0.0, [0.62, 0.71, 0.69]),
        ("d_00002", "pruned", 3e-3, 8, 0.0, [0.58]),
        ("d_00003", "pruned", 4e-3, 8, 0.0, [0.61, 0.64]),
        ("d_00004", "pruned", 5e-3, 8, 0.0, [0.55]),
        ("d_00005", "completed", 6e-3, 8, 0.0, [0.66, 0.77, 0.79]),
        ("d_00006", "pruned", 7e-3, 8, 0.0, [0.57]),
        ("d_00007", "pruned", 8e-3, 8, 0.0, [0.63, 0.62]),
        ("d_00008", "error", 9e-3, 8, 0.0, []),
    )
    client, _ = store
    page = build_report(client, make_sweep(client, tmp_path, "mostly-pruned", trials=trials), tmp_path).read_text()
    traces = _traces(figures(page)[HISTORY])
    assert traces["completed"]["x"] == [1, 5] and traces["completed"]["y"] == [0.71, 0.79]
    pruned = traces["pruned (last reported value)"]
    assert pruned["x"] == [0, 2, 3, 4, 6, 7] and pruned["y"] == [0.60, 0.58, 0.64, 0.55, 0.57, 0.62]
    assert "error (last reported value)" not in traces
    assert "Not in the optimization history, no finite valid/auroc: d_00008 (error)." in page
    assert len(_traces(figures(page)[CURVES])) == 8


def test_every_trial_is_listed_with_its_status(binary_report) -> None:
    _, page = binary_report
    for trial_id, status, *_ in TRIALS:
        assert f"<td>{trial_id}</td><td>{status}</td>" in page
    assert f'<tr class="best"><td>1</td><td>{BEST_TRIAL}</td>' in page


def test_plotly_js_is_inline_exactly_once(binary_report) -> None:
    _, page = binary_report
    library = get_plotlyjs()
    assert page.count(library[:400]) == 1
    assert page.count("plotly.js v") == 1
    # Nothing outside the library asks for a network (the library itself names its CDN).
    rest = page.replace(library, "")
    assert "<script src" not in rest and "cdn.plot.ly" not in rest and "https://" not in rest
    # The library dominates the size: the figures themselves stay small.
    assert len(page.encode()) < len(library.encode()) + 1_500_000


def test_multiclass_report(multiclass_report) -> None:
    _, page = multiclass_report
    assert page.count(FIGURE_DIV) == 3 + 3 + 6 + 2
    assert "ROC (test, one-vs-rest)" in page
    for name in ("0 (AUC ", "1 (AUC ", "2 (AUC "):
        assert name in page


# -- what the report reads -------------------------------------------------------------------


def test_study_rebuilt_from_child_runs(store, tmp_path: Path) -> None:
    client, _ = store
    sweep = load_sweep(client, make_sweep(client, tmp_path, "study"))
    study = build_study(sweep)
    states = [trial.state for trial in study.trials]
    assert states == [
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL,
    ]
    # Values are each trial's best epoch, as Tune ranks (scope="all"), in the sweep's mode.
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.best_trial.user_attrs["trial_id"] == BEST_TRIAL
    assert study.best_value == pytest.approx(0.82)
    assert study.trials[1].params == {"lr": 5.0e-3, "channels": 16, "dropout": 0.25}
    assert study.trials[2].intermediate_values == {1: 0.55, 2: 0.58}
    assert [trial.final for trial in sweep.trials] == pytest.approx([0.74, 0.81, 0.58, 0.50])
    assert [len(trial.history) for trial in sweep.trials] == [4, 4, 2, 1]


def test_metrics_by_value_match_the_metrics_module(store, tmp_path: Path) -> None:
    client, _ = store
    sweep = load_sweep(client, make_sweep(client, tmp_path, "strata"))
    test = sweep.predictions["test"]
    table = metrics_by_value(test, "hos").set_index("hos")
    assert table["count"].sum() == len(test)
    for value, group in test.groupby("hos"):
        proba = group[["proba_0", "proba_1"]].to_numpy()
        expected = classification_metrics(group["target"].astype(int).to_numpy(), proba)
        assert table.loc[value, "accuracy"] == pytest.approx(expected["accuracy"])
        assert table.loc[value, "auroc"] == pytest.approx(expected["auroc"])


@pytest.mark.parametrize(
    ("trials", "space", "note"),
    [
        (TRIALS[1:], SPACE, "needs at least 2 completed trials; this sweep has 1"),
        (TRIALS, {}, "nothing was searched"),
        (
            tuple((*trial[:5], [0.7]) for trial in TRIALS[:3]),
            SPACE,
            "could not be computed: Encountered zero total variance",
        ),
    ],
    ids=["one-completed", "no-space", "same-values"],
)
def test_importance_needs_two_trials_and_a_param(store, tmp_path: Path, trials, space, note) -> None:
    client, _ = store
    parent = make_sweep(client, tmp_path, f"importance-{note[:12]}", trials=trials, space=space)
    page = build_report(client, parent, tmp_path).read_text()
    assert note in page
    assert "Hyperparameter Importances" not in page
    assert HISTORY in figures(page)


def test_a_sweep_without_predictions_still_reports(store, tmp_path: Path) -> None:
    client, _ = store
    parent = make_sweep(client, tmp_path, "no-predictions", predictions=False)
    page = build_report(client, parent, tmp_path).read_text()
    assert "No test predictions" in page and "No valid predictions" in page
    assert page.count(FIGURE_DIV) == 3 + 3


def test_a_bad_search_space_is_one_line(store, tmp_path: Path) -> None:
    client, _ = store
    parent = make_sweep(client, tmp_path, "bad-space", space={"lr": {"type": "loguniform", "low": 0.0, "high": 1.0}})
    with pytest.raises(DataError) as error:
        load_sweep(client, parent)
    assert str(error.value).startswith(f"report: run {parent}'s config.yaml: search.space.lr: ")
    assert "\n" not in str(error.value)


def test_predictions_in_a_subfolder_are_found(store, tmp_path: Path) -> None:
    client, _ = store
    sweep = load_sweep(client, make_sweep(client, tmp_path, "nested", nested=True))
    assert [info.path for info in client.list_artifacts(sweep.parent.info.run_id, "predictions")] == [
        "predictions/predictions"
    ]
    assert sorted(sweep.predictions) == ["test", "train", "valid"]


# -- report_command ------------------------------------------------------------------------------


def _artifacts(client: MlflowClient, run_id: str) -> list[str]:
    return [info.path for info in client.list_artifacts(run_id)]


def _logged_report(client: MlflowClient, parent: str) -> Path:
    """Where MLflow keeps a run's artifacts under an experiment's artifact location: <location>/<run id>/artifacts."""
    return _mlruns(client) / parent / "artifacts" / "report.html"


def test_report_command_by_experiment_takes_the_newest_sweep(store, tmp_path: Path) -> None:
    client, uri = store
    older = make_sweep(client, tmp_path, "by-name")
    newer = make_sweep(client, tmp_path, "by-name", seed=3)
    parent, path = report_command("by-name", uri, tmp_path / "out")
    assert parent.info.run_id == newer
    assert path == tmp_path / "out" / "report.html" and path.is_file()
    assert "report.html" in _artifacts(client, newer)
    assert "report.html" not in _artifacts(client, older)
    assert newer in path.read_text()


def test_report_command_by_run_id_returns_the_logged_file(store, tmp_path: Path, monkeypatch) -> None:
    client, uri = store
    parent = make_sweep(client, tmp_path, "by-id")
    monkeypatch.chdir(tmp_path)
    run, path = report_command(parent, uri)
    # A sqlite store's artifacts are local files: the logged report itself is the path to
    # open, nothing else is written (no temporary folder, no copy in the working directory).
    assert run.info.run_id == parent
    assert path == _logged_report(client, parent) and path.is_file()
    assert parent in path.read_text()
    assert not list(tmp_path.glob("report*.html"))


def test_log_report_writes_out_where_asked(store, tmp_path: Path) -> None:
    client, _ = store
    parent = make_sweep(client, tmp_path, "out-given")
    path = log_report(client, parent, fallback=tmp_path / "fallback.html", out=tmp_path / "here" / "mine.html")
    assert path == tmp_path / "here" / "mine.html"
    assert path.read_text() == _logged_report(client, parent).read_text()
    assert not (tmp_path / "fallback.html").exists()


def test_a_report_that_fails_at_the_end_of_a_sweep_is_a_warning(store, tmp_path: Path) -> None:
    client, uri = store
    parent = make_sweep(client, tmp_path, "broken")
    _logged_report(client, parent).with_name("config.yaml").unlink()  # e.g. an artifact store that lost a file
    with pytest.warns(UserWarning) as caught:
        path = log_sweep_report(client, parent, uri, tmp_path / "fallback.html")
    assert path is None
    assert [str(warning.message) for warning in caught] == [
        f"report.html was not built: report: run {parent} has no config.yaml artifact; was it started by "
        f"`trial run`?; rebuild it with: trial report {parent} --tracking-uri {uri}"
    ]
    assert client.get_run(parent).info.status == "FINISHED"
    assert "report.html" not in _artifacts(client, parent) and not (tmp_path / "fallback.html").exists()


def test_cli_report_names_the_parent_run_then_prints_the_path_last(store, tmp_path: Path, monkeypatch, capsys) -> None:
    client, uri = store
    parent = make_sweep(client, tmp_path, "cli-lines")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "cli-lines", "--tracking-uri", uri]) == 0
    run = client.get_run(parent)
    started = datetime.fromtimestamp(run.info.start_time / 1000).astimezone()
    assert capsys.readouterr().out.splitlines() == [
        f"sweep 'cli-lines': parent run {parent}, started {started:%Y-%m-%d %H:%M:%S %Z}, FINISHED",
        str(_logged_report(client, parent)),
    ]


# -- debug sweeps ---------------------------------------------------------------------------------


def test_an_experiments_debug_sweeps_are_skipped_unless_asked(store, tmp_path: Path) -> None:
    client, uri = store
    older_debug = make_sweep(client, tmp_path, "with-debug", debug=True)
    real = make_sweep(client, tmp_path, "with-debug", seed=1)
    newest_debug = make_sweep(client, tmp_path, "with-debug", debug=True, seed=2)
    assert older_debug != newest_debug
    assert resolve_target(client, "with-debug", uri) == real
    assert resolve_target(client, "with-debug", uri, debug=True) == newest_debug
    # A run id names its run, whatever its tag.
    assert resolve_target(client, older_debug, uri) == older_debug
    assert resolve_target(client, real, uri, debug=True) == real


def test_only_debug_sweeps_is_one_line_suggesting_debug(store, tmp_path: Path, monkeypatch, capsys) -> None:
    client, uri = store
    parent = make_sweep(client, tmp_path, "only-debug", debug=True)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "only-debug", "--tracking-uri", uri]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"trial: error: report: experiment 'only-debug' in {uri} has only debug sweeps (tag debug=true); "
        "add --debug to report the newest one\n"
    )
    assert main(["report", "only-debug", "--tracking-uri", uri, "--debug"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"debug sweep 'only-debug-debug': parent run {parent}, started ")
    assert lines[1] == str(_logged_report(client, parent))


def test_debug_without_debug_sweeps_is_an_error(store, tmp_path: Path) -> None:
    client, uri = store
    make_sweep(client, tmp_path, "no-debug")
    with pytest.raises(ConfigError) as error:
        resolve_target(client, "no-debug", uri, debug=True)
    assert str(error.value) == (
        f"report: experiment 'no-debug' in {uri} has no debug sweep (tag debug=true); drop --debug for its newest sweep"
    )


def test_unknown_target_is_one_clear_line(store) -> None:
    _, uri = store
    with pytest.raises(ConfigError) as error:
        report_command("no-such-sweep", uri)
    assert str(error.value) == f"report: no experiment or run named 'no-such-sweep' in {uri}"


def test_a_trial_run_id_names_its_sweep(store, tmp_path: Path) -> None:
    client, uri = store
    parent = make_sweep(client, tmp_path, "child-id")
    child = client.search_runs([client.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")[0]
    with pytest.raises(ConfigError, match=f"is a trial's run; its sweep is run {parent}"):
        report_command(child.info.run_id, uri)


def test_an_experiment_without_sweeps_is_an_error(store) -> None:
    client, uri = store
    client.create_experiment("empty")
    with pytest.raises(ConfigError, match="report: experiment 'empty' .* has no sweep run"):
        report_command("empty", uri)


# -- optional: render in a headless browser -----------------------------------------------------------


def test_renders_in_headless_chromium(binary_report, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH")
    _, page = binary_report
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    # plotly.js draws an <svg class="main-svg"> into each figure div it renders.
    assert dom.count('class="main-svg"') >= page.count(FIGURE_DIV)
