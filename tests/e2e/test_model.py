"""The model out of a real sweep: registered in MLflow's Model Registry, scored by
`trial predict`, by `mlflow.pyfunc`, and over REST by `mlflow models serve`; on the
default sqlite store and on a real `mlflow server` with proxied artifacts.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml


from trial.cli import main
from trial.model import Predictor
from trial.runs import BEST_TRIAL_TAG, MODEL_DIR, ROLE_TAG, SWEEP_RUN_TAG, store_client
from trial.ui import free_port, stop, wait_until_healthy

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def _mlflow(arguments: list[str], folder: Path, **env: str) -> Iterator[str]:
    """`mlflow ARGUMENTS` serving on a free port of 127.0.0.1 for the block; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / f"mlflow-{port}.log"
    command = [sys.executable, "-m", "mlflow", *arguments, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_healthy(process, url, timeout=120, log=log)
            yield url
        finally:
            stop(process)


def _parent(client: MlflowClient, experiment: str):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'")
    return parent


@pytest.fixture(scope="module")
def ecg_sweep(ray_cluster, tmp_path_factory) -> dict:
    """One demo_ecg sweep on the default sqlite store, its model registered as `ecg-mi`."""
    workdir = tmp_path_factory.mktemp("model")
    config = {
        "name": "model",
        "seed": 3,
        "data": {"dataset": "demo_ecg", "dataset_params": {"n_recordings": 240}, "root": str(workdir / "data")},
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": 2, "batch_size": 32, "channels": 8, "augment": ["noise"]}},
        "search": {"num_samples": 1, "max_concurrent": 1, "space": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}},
        "tracking": {"uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": "model", "register_as": "ecg-mi"},
    }
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(workdir / "sweep.yaml"), "--quiet"]) == 0
    client = store_client(config["tracking"]["uri"])
    (labels,) = (workdir / "data").glob("demo_ecg-*/labels.csv")
    return {"workdir": workdir, "uri": config["tracking"]["uri"], "client": client, "parent": _parent(client, "model"), "labels": labels}


def _test_split_csv(sweep: dict, name: str, *, labelled: bool = True) -> Path:
    """The sweep's own test rows, as a new CSV beside its labels (paths stay relative)."""
    parent = sweep["parent"]
    manifest = next(
        item.path for item in sweep["client"].list_artifacts(parent.info.run_id, "manifest") if item.path.endswith(".csv")
    )
    frame = pd.read_csv(sweep["client"].download_artifacts(parent.info.run_id, manifest, str(sweep["workdir"])))
    rows = frame[frame["split"] == "test"].drop(columns=["split"])
    path = sweep["labels"].parent / name
    (rows if labelled else rows.drop(columns=["label"])).to_csv(path, index=False)
    return path


def test_the_sweep_logs_and_registers_its_best_model(ecg_sweep: dict, global_tracking_uri) -> None:
    client, parent = ecg_sweep["client"], ecg_sweep["parent"]
    run_id = parent.info.run_id
    logged = {item.path for item in client.list_artifacts(run_id, MODEL_DIR)}
    assert {f"{MODEL_DIR}/MLmodel", f"{MODEL_DIR}/input_example.json", f"{MODEL_DIR}/artifacts"} <= logged
    (version,) = client.search_model_versions("name = 'ecg-mi'")
    assert str(version.version) == "1" and version.run_id == run_id
    assert version.tags[SWEEP_RUN_TAG] == run_id
    assert float(version.tags["test/auroc"]) == pytest.approx(parent.data.metrics["test/auroc"], abs=1e-5)
    global_tracking_uri(ecg_sweep["uri"])
    info = mlflow.models.get_model_info("models:/ecg-mi/1")
    assert info.signature.inputs.to_dict()[0]["tensor-spec"] == {"dtype": "float32", "shape": (-1, 3, 1000)}
    assert info.signature.outputs.input_names() == ["proba_0", "proba_1"]
    # The weights are the best trial's best epoch: the checkpoint Tune kept for it.
    best = parent.data.tags[BEST_TRIAL_TAG]
    (state,) = (ecg_sweep["workdir"] / "trial_runs" / "model" / best).glob("checkpoint_*/state.pt")
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{MODEL_DIR}"))
    predictor = Predictor.load(local / "artifacts" / "trial")
    expected = torch.load(state, weights_only=True)["best_model"]
    for key, value in predictor.models[0].state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_predict_on_the_test_split_reproduces_the_sweeps_test_metrics(ecg_sweep: dict, capsys) -> None:
    labels = _test_split_csv(ecg_sweep, "external.csv")
    out = ecg_sweep["workdir"] / "external-scores.csv"
    code = main(["predict", "models:/ecg-mi/1", "--labels", str(labels), "-o", str(out), "--tracking-uri", ecg_sweep["uri"]])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == str(out)
    assert any(line.startswith("hos=") for line in lines), lines
    client = ecg_sweep["client"]
    (run,) = client.search_runs(
        [ecg_sweep["parent"].info.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'prediction'"
    )
    for metric in ("auroc", "accuracy", "loss"):
        assert run.data.metrics[metric] == pytest.approx(ecg_sweep["parent"].data.metrics[f"test/{metric}"], abs=1e-5)
    assert any(key.startswith("hos/") for key in run.data.metrics)


def test_the_rest_server_answers_as_trial_predict(ecg_sweep: dict, capsys) -> None:
    labels = _test_split_csv(ecg_sweep, "unlabelled.csv", labelled=False)
    out = ecg_sweep["workdir"] / "unlabelled-scores.csv"
    assert main(["predict", "models:/ecg-mi/1", "--labels", str(labels), "-o", str(out), "--tracking-uri", ecg_sweep["uri"]]) == 0
    scored = pd.read_csv(out).head(8)
    x = np.stack([np.load(labels.parent / path) for path in scored["path"]]).astype(np.float32)

    command = ["models", "serve", "-m", "models:/ecg-mi/1", "--env-manager", "local"]
    with _mlflow(command, ecg_sweep["workdir"], MLFLOW_TRACKING_URI=ecg_sweep["uri"]) as url:
        request = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"inputs": x.tolist()}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = pd.DataFrame(json.loads(response.read())["predictions"])
    assert list(answer.columns) == ["proba_0", "proba_1"]
    np.testing.assert_allclose(answer.to_numpy(), scored[["proba_0", "proba_1"]].to_numpy(), atol=1e-6)


def test_a_tracking_server_registers_and_serves_a_tabular_model(
    ray_cluster, tmp_path: Path, capsys, monkeypatch, global_tracking_uri
) -> None:
    # A team's server: runs' artifacts are uploaded through it (mlflow-artifacts:), not written as local files.
    command = ["server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "served")]
    with _mlflow(command, tmp_path) as url:
        config = {
            "name": "remote",
            "data": {"dataset": "breast_cancer", "root": str(tmp_path / "data")},
            "solver": {"name": "tabular_mlp", "params": {"epochs": 2}},
            "search": {"num_samples": 1, "space": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}},
            "tracking": {"uri": url, "experiment": "remote", "register_as": "cancer"},
            "storage": str(tmp_path / "runs"),
        }
        (tmp_path / "remote.yaml").write_text(yaml.safe_dump(config))
        monkeypatch.chdir(tmp_path)
        assert main(["run", "--config", str(tmp_path / "remote.yaml"), "--quiet"]) == 0
        client = store_client(url)
        parent = _parent(client, "remote")
        assert client.get_run(parent.info.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
        (version,) = client.search_model_versions("name = 'cancer'")
        assert version.tags[SWEEP_RUN_TAG] == parent.info.run_id
        capsys.readouterr()

        (labels,) = (tmp_path / "data").glob("breast_cancer*/labels.csv")
        assert main(["predict", "models:/cancer/1", "--labels", str(labels), "-o", str(tmp_path / "s.csv"), "--tracking-uri", url]) == 0
        assert "logged on MLflow run" in capsys.readouterr().out
        scored = pd.read_csv(tmp_path / "s.csv")
        global_tracking_uri(url)
        model = mlflow.pyfunc.load_model("models:/cancer/1")
        features = [name for name in model.metadata.get_input_schema().input_names()]
        answer = model.predict(pd.read_csv(labels)[features].head(20))
        np.testing.assert_allclose(answer.to_numpy(), scored[["proba_0", "proba_1"]].head(20).to_numpy(), atol=1e-6)


def test_a_cross_validated_sweep_registers_its_five_fold_ensemble_for_predict(ray_cluster, tmp_path: Path, capsys, monkeypatch) -> None:
    # The README's sample, shortened: every trial trains all 5 folds; the best config's 5
    # fold models are one registered model, and `trial predict` scores with all of them.
    sample = Path(__file__).resolve().parents[2] / "search_spaces" / "breast_cancer_cv.yaml"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    overrides = ["solver.params.epochs=4", "search.num_samples=2", "search.scheduler.grace_period=2", f"tracking.uri={uri}"]
    assert main(["run", "--config", str(sample), "--quiet", *(arg for item in overrides for arg in ("--set", item))]) == 0
    client = store_client(uri)
    parent = _parent(client, "breast-cancer-cv")
    assert parent.data.tags["trial.members"] == "fold0,fold1,fold2,fold3,fold4"
    (version,) = client.search_model_versions("name = 'breast-cancer-cv'")
    assert version.run_id == parent.info.run_id
    local = Path(client.download_artifacts(parent.info.run_id, MODEL_DIR, str(tmp_path / "model")))
    assert len(Predictor.load(local / "artifacts" / "trial").models) == 5

    manifest = next(item.path for item in client.list_artifacts(parent.info.run_id, "manifest") if item.path.endswith(".csv"))
    frame = pd.read_csv(client.download_artifacts(parent.info.run_id, manifest, str(tmp_path)))
    test_rows = tmp_path / "test-rows.csv"
    frame[frame["split"] == "test"].drop(columns=["split", "fold"]).to_csv(test_rows, index=False)
    capsys.readouterr()
    assert main(["predict", "models:/breast-cancer-cv/1", "--labels", str(test_rows), "-o", str(tmp_path / "s.csv"), "--tracking-uri", uri]) == 0
    (run,) = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'prediction'")
    for metric in ("auroc", "accuracy", "loss"):
        assert run.data.metrics[metric] == pytest.approx(parent.data.metrics[f"test/{metric}"], abs=1e-5)
    # The ensemble, not its best member: a member alone scores differently.
    members = [parent.data.metrics[f"test/fold{k}/loss"] for k in range(5)]
    assert all(abs(loss - run.data.metrics["loss"]) > 1e-6 for loss in members)
