"""`trial ui`: MLflow's server over a sweep's store serves the parent, its children, their
per-epoch metrics and the parent's artifacts, and the UI renders the runs in headless Chromium.

The store is built directly with MlflowClient (as tracking.py writes a sweep: a parent run
tagged trial.role=sweep, one child per trial with mlflow.parentRunId and per-epoch metrics),
so no Ray and no sweep run. One server serves the module's REST and browser tests.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT
from trial.cli import main
from trial.errors import UserError
from trial.runs import PARENT_TAG, ROLE_TAG, TRIAL_ID_TAG, artifact_root
from trial.ui import (
    ServerError,
    running_server,
    server_command,
    warn_if_exposed,
)

EXPERIMENT = "ui-e2e"
PARENT_NAME = "sweep-ui-demo"  # not the experiment's name, so finding it on the page means the run row
# trial id -> valid/auroc per epoch
TRIALS = {
    "ui_00000": [0.61, 0.70, 0.74],
    "ui_00001": [0.66, 0.79, 0.83],
    "ui_00002": [0.55, 0.58, 0.60],
}
CONFIG_TEXT = "name: sweep-ui-demo\nseed: 42\n"
# MLflow's own links and requests to 127.0.0.1 must never go through $http_proxy.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH: the rendered UI is not checked (the REST tests still are)"
)


@dataclass(frozen=True)
class Store:
    uri: str
    root: Path
    experiment_id: str
    parent_id: str
    children: dict[str, str]  # trial id -> run id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A sweep's store as `trial run` leaves it when started in the store's folder."""
    root = tmp_path_factory.mktemp("ui-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    before = Path.cwd()
    os.chdir(root)  # MLflow's client puts artifacts under ./mlruns of the process that creates the experiment
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment_id = client.create_experiment(EXPERIMENT)
        parent = client.create_run(experiment_id, run_name=PARENT_NAME, tags={ROLE_TAG: "sweep"}).info.run_id
        client.log_text(parent, CONFIG_TEXT, "config.yaml")
        children = {}
        for trial_id, history in TRIALS.items():
            tags = {PARENT_TAG: parent, ROLE_TAG: "trial", TRIAL_ID_TAG: trial_id}
            run = client.create_run(experiment_id, run_name=trial_id, tags=tags).info.run_id
            client.log_param(run, "lr", "0.001")
            for epoch, value in enumerate(history, start=1):
                client.log_metric(run, "valid/auroc", value, step=epoch)
                client.log_metric(run, "train/loss", 1.0 / epoch, step=epoch)
            client.set_terminated(run, "FINISHED")
            children[trial_id] = run
        client.set_terminated(parent, "FINISHED")
    finally:
        os.chdir(before)
    return Store(uri, root, experiment_id, parent, children)


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[str]:
    with running_server(store.uri) as base_url:
        yield base_url


def _get(base_url: str, endpoint: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with NO_PROXY.open(f"{base_url}{endpoint}{query}", timeout=30) as response:
        body = response.read()
    return json.loads(body) if endpoint.startswith("/api/") else body.decode()


def _post(base_url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{base_url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with NO_PROXY.open(request, timeout=30) as response:
        return json.loads(response.read())


def _search(base_url: str, experiment_id: str, filter_string: str) -> dict[str, dict[str, Any]]:
    """run name -> run, through /runs/search."""
    answer = _post(base_url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id], "filter": filter_string})
    return {run["info"]["run_name"]: run for run in answer.get("runs", [])}


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}


# -- the command, no server -----------------------------------------------------------------


def test_server_command_binds_loopback_and_serves_the_store_and_its_artifacts(tmp_path, monkeypatch) -> None:
    (tmp_path / "mlflow.db").touch()
    monkeypatch.chdir(tmp_path)
    command = server_command("sqlite:///mlflow.db")  # relative, as default_tracking_uri's fallback reads

    def option(name: str) -> str:
        return command[command.index(name) + 1]

    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert option("--backend-store-uri") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert option("--host") == "127.0.0.1"
    assert option("--port") == "5000"
    assert option("--default-artifact-root") == option("--artifacts-destination") == (tmp_path / "mlruns").as_uri()
    assert artifact_root(f"sqlite:///{tmp_path / 'mlflow.db'}") == (tmp_path / "mlruns").as_uri()


def test_a_missing_store_or_a_server_uri_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(UserError, match=r"no MLflow store at .*nowhere\.db"):
        server_command(f"sqlite:///{tmp_path / 'nowhere.db'}")
    with pytest.raises(UserError, match="already an MLflow server"):
        server_command("http://127.0.0.1:5000")
    assert main(["ui", "--tracking-uri", f"sqlite:///{tmp_path / 'nowhere.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trial: error: --tracking-uri: no MLflow store at") and err.count("\n") == 1


def test_only_a_non_loopback_host_warns() -> None:
    with pytest.warns(UserWarning, match="--host 0.0.0.0 opens the MLflow UI to the network"):
        warn_if_exposed("0.0.0.0", 5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for host in ("127.0.0.1", "localhost", "::1"):
            warn_if_exposed(host, 5000)


# -- a running server -------------------------------------------------------------------------


@pytest.mark.e2e
def test_rest_api_serves_the_parent_its_children_and_their_epochs(server: str, store: Store) -> None:
    assert _get(server, "/health") == "OK"
    experiment = _get(server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
    assert experiment["experiment_id"] == store.experiment_id

    parents = _search(server, store.experiment_id, f"tags.`{ROLE_TAG}` = 'sweep'")
    assert list(parents) == [PARENT_NAME]
    assert parents[PARENT_NAME]["info"]["run_id"] == store.parent_id

    children = _search(server, store.experiment_id, f"tags.`{PARENT_TAG}` = '{store.parent_id}'")
    assert sorted(children) == sorted(TRIALS)
    for trial_id, history in TRIALS.items():
        run = children[trial_id]
        assert _tags(run)[TRIAL_ID_TAG] == trial_id
        assert run["info"]["status"] == "FINISHED"
        metrics = _get(
            server, "/api/2.0/mlflow/metrics/get-history", run_id=run["info"]["run_id"], metric_key="valid/auroc"
        )["metrics"]
        assert sorted((m["step"], m["value"]) for m in metrics) == list(enumerate(history, start=1))


@pytest.mark.e2e
def test_the_parents_artifacts_are_browsable(server: str, store: Store) -> None:
    parent = _get(server, "/api/2.0/mlflow/runs/get", run_id=store.parent_id)["run"]
    # The runs' artifacts are where `trial ui` points the server's artifact root.
    assert Path(parent["info"]["artifact_uri"]).is_relative_to(store.root / "mlruns")
    assert artifact_root(store.uri) == (store.root / "mlruns").as_uri()
    listing = _get(server, "/api/2.0/mlflow/artifacts/list", run_id=store.parent_id)
    assert [item["path"] for item in listing["files"]] == ["config.yaml"]
    assert _get(server, "/get-artifact", run_id=store.parent_id, path="config.yaml") == CONFIG_TEXT


@pytest.mark.e2e
def test_a_server_that_cannot_start_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "mlflow.db").write_text("not a database\n")
    expected = r"(?s)mlflow server exited with code \d+ before it answered .*/health.*output ends"
    with pytest.raises(ServerError, match=expected), running_server(f"sqlite:///{tmp_path / 'mlflow.db'}", timeout=60):
        pass


@pytest.mark.e2e
def test_cli_prints_the_url_and_ctrl_c_stops_the_server_with_exit_0(store: Store, tmp_path) -> None:
    server_output = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "trial.cli", "ui", "--tracking-uri", store.uri, "--port", "0"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=server_output, text=True,
        # A runner that started pytest with SIGINT ignored must not hand that on: Ctrl-C is the point.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - one signal() call
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline and process.poll() is None:
            try:
                found = re.match(r"MLflow UI: (http://127\.0\.0\.1:\d+) ", lines.get(timeout=1))
            except queue.Empty:
                continue
            url = found and found.group(1)
        assert url, f"no URL printed; output:\n{(tmp_path / 'server.log').read_text()[-3000:]}"
        assert _get(url, "/health") == "OK"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        server_output.close()
    stderr = (tmp_path / "server.log").read_text()
    assert "Traceback" not in stderr, stderr[-3000:]
    with pytest.raises(urllib.error.URLError):  # the server went with it
        _get(url, "/health")


# -- the UI in headless Chromium --------------------------------------------------------------


def _render(url: str, profile: Path) -> str:
    """The DOM after MLflow's React app has loaded its data (virtual time lets its fetches finish)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
            f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.DOTALL)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def _runs_page(server: str, experiment_id: str, query: str = "") -> str:
    # MLflow 3.17 opens an experiment on its GenAI overview; /runs with workflowType=machine_learning
    # is the "Model training" runs table (routes from the installed UI bundle).
    return f"{server}/#/experiments/{experiment_id}/runs?workflowType=machine_learning{query}"


@pytest.mark.e2e
@needs_chromium
def test_ui_renders_the_parent_and_every_trial_run(server: str, store: Store, tmp_path) -> None:
    # Sorted by name, the table is flat: MLflow nests children only in its default (by date) order.
    url = _runs_page(server, store.experiment_id, "&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true")
    dom = _render(url, tmp_path / "chromium")
    text = _visible_text(dom)
    for name, run_id in {PARENT_NAME: store.parent_id, **store.children}.items():
        assert name in text, f"{name} not on the page; it shows: {text[:1500]}"
        assert f'href="#/experiments/{store.experiment_id}/runs/{run_id}"' in dom


@pytest.mark.e2e
@needs_chromium
def test_ui_nests_the_trials_under_the_sweep(server: str, store: Store, tmp_path) -> None:
    dom = _render(_runs_page(server, store.experiment_id), tmp_path / "chromium")
    text = _visible_text(dom)
    assert f'href="#/experiments/{store.experiment_id}/runs/{store.parent_id}"' in dom, text[:1500]
    assert f"{1 + len(TRIALS)} matching runs" in text
    # The children are folded under the parent's row (its expander), not listed beside it.
    for trial_id, run_id in store.children.items():
        assert f"runs/{run_id}" not in dom, f"{trial_id} is listed flat: its parent tag did not nest it"
