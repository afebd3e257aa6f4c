"""A report whose run's artifacts are not local files (a tracking server's proxied artifact
store): it is logged there, and a copy a person can open is written where the caller says.

A real `mlflow server` over a sqlite store; its experiment keeps artifacts under
`mlflow-artifacts:`, which the client uploads through the server, as with a team's
tracking server.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.unit.test_report import make_sweep
from trial.cli import main
from trial.report import log_sweep_report
from trial.ui import running_server

pytestmark = pytest.mark.e2e


def test_a_remote_artifact_store_gets_a_local_copy(tmp_path: Path, monkeypatch, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the store's tables: the server needs one
    with running_server(uri) as url:
        client = MlflowClient(tracking_uri=url)
        client.create_experiment("remote", artifact_location="mlflow-artifacts:/remote")
        parent = make_sweep(client, tmp_path, "remote")
        assert client.get_run(parent).info.artifact_uri.startswith("mlflow-artifacts:")

        # At the end of a sweep: the copy goes to Tune's experiment folder.
        experiment_path = tmp_path / "trial_runs" / "remote"
        path = log_sweep_report(client, parent, url, experiment_path / "report.html")
        assert path == experiment_path / "report.html"
        logged = Path(client.download_artifacts(parent, "report.html", str(tmp_path / "download")))
        assert path.read_text() == logged.read_text() and parent in path.read_text()

        # `trial report` without --out: a copy in the working directory, named by the run.
        monkeypatch.chdir(tmp_path)
        assert main(["report", "remote", "--tracking-uri", url]) == 0
        last = capsys.readouterr().out.splitlines()[-1]
        assert last == str(tmp_path / f"report-{parent}.html")
        assert parent in Path(last).read_text()
