"""The CLI as a user runs it: a real sweep, a real local Ray, a real MLflow sqlite store."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def run_cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two trials x two epochs, run once for every assertion below; defaults for the stores."""
    workdir = tmp_path_factory.mktemp("sweep")
    config = {
        "name": "e2e",
        "data": {"dataset": "demo_ecg", "dataset_params": {"n_recordings": 240}},
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": 2, "batch_size": 32, "channels": 8}},
        "search": {
            "metric": "valid/auroc",
            "num_samples": 2,
            "max_concurrent": 2,
            "scheduler": {"type": "none"},
            "space": {
                "lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
                "weight_decay": {"_type": "loguniform", "_value": [1.0e-6, 1.0e-2]},
            },
        },
    }
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(config))
    result = run_cli(["--config", "sweep.yaml", "--quiet", "--set", "seed=7"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("trial.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("trial.role") == "trial"]
    return workdir, result, client, parents, children


def test_one_parent_with_one_child_per_trial(sweep):
    _, _, _, parents, children = sweep
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.info.status == "FINISHED" for c in children)
    assert {c.info.run_name for c in children} == {c.data.tags["trial.trial_id"] for c in children}


def test_child_runs_hold_config_params_metrics_and_tags(sweep):
    _, _, client, _, children = sweep
    lrs = set()
    for child in children:
        params = child.data.params
        # Every resolved config value, searched ones under their solver param names.
        assert params["seed"] == "7" and params["solver.name"] == "ecg_cnn1d"
        assert params["epochs"] == "2" and params["channels"] == "8"
        assert params["data.stratify"] == "[label, hos]" and params["data.group"] == "patient_id"
        assert 1e-4 <= float(params["lr"]) <= 1e-2 and 1e-6 <= float(params["weight_decay"]) <= 1e-2
        lrs.add(params["lr"])
        for metric in ("train/loss", "valid/auroc", "valid/loss"):
            steps = [m.step for m in client.get_metric_history(child.info.run_id, metric)]
            assert steps == [1, 2], metric
        assert child.data.tags["seeds"] == "0:7"
        assert child.data.tags["trial.pruned"] == "false"
    assert len(lrs) == 2  # Optuna proposed two different values


def test_parent_holds_config_manifest_and_best_trial(sweep):
    _, result, client, parents, children = sweep
    parent = parents[0]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "manifest", "predictions", "report.html"} <= artifacts
    predictions = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "predictions")}
    assert predictions == {"train_probability.csv", "valid_probability.csv", "test_probability.csv"}
    manifest_files = [a.path for a in client.list_artifacts(parent.info.run_id, "manifest")]
    assert len(manifest_files) == 1 and manifest_files[0].endswith(".csv")
    best_id = parent.data.tags["trial.best_trial_id"]
    best = next(c for c in children if c.data.tags["trial.trial_id"] == best_id)
    assert parent.data.params["lr"] == best.data.params["lr"]
    assert {"valid/auroc", "test/auroc", "test/accuracy"} <= set(parent.data.metrics)
    assert best.data.metrics["test/auroc"] == parent.data.metrics["test/auroc"]
    other = next(c for c in children if c is not best)
    best_valid = max(m.value for m in client.get_metric_history(best.info.run_id, "valid/auroc"))
    other_valid = max(m.value for m in client.get_metric_history(other.info.run_id, "valid/auroc"))
    assert best_valid >= other_valid


def test_summary_names_best_trial_and_ui_command(sweep):
    workdir, result, _, parents, _ = sweep
    out = result.stdout
    assert f"Best trial {parents[0].data.tags['trial.best_trial_id']}" in out
    assert f"mlflow ui --backend-store-uri sqlite:///{workdir / 'mlflow.db'}" in out
    assert (workdir / "trial_runs" / "e2e").is_dir()  # Tune storage beside the MLflow store
    # The default sqlite store keeps artifacts beside it: the summary names the logged report itself.
    report = next(Path(line.split(maxsplit=1)[1]) for line in out.splitlines() if line.startswith("Report:"))
    assert report == workdir / "mlruns" / parents[0].info.run_id / "artifacts" / "report.html"
    assert report.is_file()


def test_the_report_logged_by_the_sweep_shows_the_parent_finished(sweep, tmp_path):
    _, _, client, parents, _ = sweep
    page = Path(client.download_artifacts(parents[0].info.run_id, "report.html", str(tmp_path))).read_text()
    assert "<td>status</td><td>FINISHED</td>" in page


def test_prediction_csvs_hold_sample_columns_and_probabilities(sweep, tmp_path):
    _, _, client, parents, _ = sweep
    local = client.download_artifacts(parents[0].info.run_id, "predictions/test_probability.csv", str(tmp_path))
    frame = pd.read_csv(local)
    assert list(frame.columns) == ["row", "path", "label", "hos", "age_group", "target", "proba_0", "proba_1"]
    assert ((frame["proba_0"] + frame["proba_1"]).round(6) == 1).all()
    assert (frame["label"] == frame["target"]).all()


def test_debug_mode_runs_the_default_demo_small_and_tags_it(tmp_path):
    result = run_cli(["--debug"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    finished = [line for line in result.stdout.splitlines() if line.startswith("trial ") and " after 2 epochs: valid/auroc " in line]
    assert len(finished) == 2, result.stdout[-3000:]
    assert "Trial status:" not in result.stdout  # the sweep's own progress, not Tune's tables
    assert re.search(r"\[2/2 trials ended \(\d pruned, 0 failed\), 0 running \| best valid/auroc", finished[-1]), finished
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("demo-ecg").experiment_id])
    assert len(runs) == 3  # the parent and 2 trials
    assert all(r.data.tags.get("debug") == "true" for r in runs)
    child = next(r for r in runs if r.data.tags["trial.role"] == "trial")
    assert child.data.params["epochs"] == "2" and child.data.params["data.subsample"] == "0.05"
    assert all(r.data.tags["mlflow.runName"].startswith("demo-ecg-debug") for r in runs if r.data.tags["trial.role"] == "sweep")
    assert (tmp_path / "trial_runs" / "demo-ecg-debug").is_dir() and not (tmp_path / "trial_runs" / "demo-ecg").exists()
    # Every row was checked (the full run's manifest is cached); 5% was trained on.
    sizes = sorted(len(pd.read_csv(path)) for path in (tmp_path / "trial_runs" / "cache").glob("manifest-*.csv"))
    assert len(sizes) == 2 and sizes[1] == 2000
    assert 100 <= sizes[0] <= 130  # 5% of 2000, at least 20 rows of the rare class
    # The real sweep's --resume is not confused with the debug sweep.
    resume = run_cli(["--resume"], tmp_path)
    assert resume.returncode == 2
    assert "no sweep 'demo-ecg' to resume" in resume.stderr, resume.stderr


def test_debug_mode_works_on_a_team_dataset_the_full_run_accepts(tmp_path):
    from tests.team_data import team_data

    labels = team_data(tmp_path / "data")  # 400 rows: its 5% sample holds less than one batch of 64
    config = {
        "name": "team",
        "data": {"labels": str(labels), "stratify": ["label", "hos"], "group": "patient_id", "balance": ["label", "age_group"]},
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": 3, "batch_size": 64, "channels": 4}},
        "search": {"metric": "valid/auroc", "scheduler": {"type": "asha", "grace_period": 3}, "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
    }
    (tmp_path / "team.yaml").write_text(yaml.safe_dump(config))
    result = run_cli(["--config", "team.yaml", "--debug", "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("trial: warning: ")]
    assert any("debug: solver.params.batch_size lowered from 64 to " in line for line in warnings), result.stderr[-3000:]
    assert any("search.scheduler.grace_period=3 lowered to 2" in line for line in warnings), result.stderr[-3000:]
    assert "Best trial" in result.stdout


def test_manifest_command_prints_path_and_split_shares(tmp_path):
    config = {
        "name": "m",
        "data": {"dataset": "demo_ecg", "dataset_params": {"n_recordings": 240}},
        "solver": {"name": "ecg_cnn1d"},
        "search": {"space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "trial.cli", "manifest", "--config", "m.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert Path(lines[0]).is_file() and lines[0].endswith(".csv")
    assert "hos" in result.stdout and "groups in more than one split: 0" in result.stdout
    again = subprocess.run(
        [sys.executable, "-m", "trial.cli", "manifest", "--config", "m.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert again.stdout.splitlines()[0] == lines[0]  # reused by content hash


def test_report_command_rebuilds_the_report_from_the_store(sweep, tmp_path, capsys):
    from trial.cli import main

    workdir, _, client, parents, children = sweep
    code = main(["report", "e2e", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--out", str(tmp_path)])
    assert code == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    page = path.read_text()
    assert path == tmp_path / "report.html"
    for child in children:
        assert child.data.tags["trial.trial_id"] in page
    assert "Optimization history" in page and "Reliability (test)" in page
    best_id = parents[0].data.tags["trial.best_trial_id"]
    assert f"3. Best trial ({best_id})" in page


def test_each_trial_writes_tensorboard_event_files(sweep):
    workdir, _, _, _, children = sweep
    for child in children:
        trial_dir = workdir / "trial_runs" / "e2e" / child.data.tags["trial.trial_id"]
        assert list(trial_dir.glob("events.out.tfevents.*")), trial_dir


def test_each_finished_trial_leaves_its_best_weights_named_by_its_metric(sweep):
    import torch

    from solvers.ecg_cnn1d import ECGCNN1d
    from trial.context import load_state

    workdir, _, client, parents, children = sweep
    experiment = workdir / "trial_runs" / "e2e"
    weights = {}
    for child in children:
        assert child.data.tags["trial.status"] in ("completed", "pruned")
        trial_id = child.data.tags["trial.trial_id"]
        best = max(m.value for m in client.get_metric_history(child.info.run_id, "valid/auroc"))
        files = list((experiment / trial_id).glob("*.pt"))
        assert [f.name for f in files] == [f"ecg_cnn1d-{trial_id}-valid_auroc={best:.4f}.pt"], files
        weights[trial_id] = files[0]
    # The best trial's file is a plain state dict of the model: its checkpoint's best epoch.
    best_id = parents[0].data.tags["trial.best_trial_id"]
    model = ECGCNN1d(ECGCNN1d.parse_params({"channels": 8})).build_model((3, 1000), 2)  # demo_ecg: 3 leads
    model.load_state_dict(torch.load(weights[best_id], weights_only=True))
    (checkpoint,) = (path for path in (experiment / best_id).glob("checkpoint_*") if path.is_dir())  # Tune keeps the last
    best_model = load_state(checkpoint)["best_model"]
    assert model.state_dict().keys() == best_model.keys()
    assert all(torch.equal(model.state_dict()[key], value) for key, value in best_model.items())


def test_optuna_study_lives_beside_the_mlflow_store(sweep):
    import optuna

    workdir, result, _, parents, children = sweep
    study = optuna.load_study(study_name=f"e2e-{parents[0].info.run_id}", storage=f"sqlite:///{workdir / 'optuna.db'}")
    assert len(study.trials) == len(children) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {round(t.params["lr"], 12) for t in study.trials} == {round(float(c.data.params["lr"]), 12) for c in children}
    assert f"optuna-dashboard sqlite:///{workdir / 'optuna.db'}" in result.stdout
