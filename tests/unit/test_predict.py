"""The sweep's model as an MLflow model, and `trial predict`, without Ray.

A model is saved exactly as a sweep's finish saves it (trial.model.save_model) and logged
on a parent run of a real sqlite store; `trial predict` then loads it by run id, runs:/
URI or registry name, as a user would after a sweep. A real sweep registering its model
and a real REST server are in tests/e2e/test_model.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch


from solvers.ecg_cnn1d import ECGCNN1d
from trial.cli import main
from trial.errors import ConfigError
from trial.model import ModelSpec, Predictor, reference, register_model, save_model
from trial.predict import metric_key
from trial.runs import MODEL_DIR, MODEL_TAG, ROLE_TAG, store_client
from tests.team_data import team_data

SHAPE = (2, 64)
HOSPITALS = ("northgate", "riverside", "westbrook")


def _spec(params, *, run_id: str = "0" * 32) -> ModelSpec:
    return ModelSpec(
        solver=reference(ECGCNN1d),
        params=params.model_dump(mode="json"),
        input_shape=SHAPE,
        classes=(0, 1),
        target="label",
        path_column="path",
        reader=None,
        features=(),
        stratify=("label", "hos"),
        members=(),
        sweep_run_id=run_id,
    )


def _members(params, count: int) -> list[dict[str, torch.Tensor]]:
    members = []
    for seed in range(count):
        torch.manual_seed(seed)
        members.append(ECGCNN1d(params).build_model(SHAPE, 2).state_dict())
    return members


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A sqlite store with one 'sweep' whose model is registered as `ecg`, and a data folder."""
    root = tmp_path_factory.mktemp("predict")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = store_client(uri)
    experiment = client.create_experiment("sweeps", artifact_location=(root / "mlruns").as_uri())
    run_id = client.create_run(experiment).info.run_id
    params = ECGCNN1d.parse_params({"channels": 4, "augment": ["noise", "scaling"]})
    example = np.zeros((1, *SHAPE), np.float32)
    save_model(root / "saved", _spec(params, run_id=run_id), _members(params, 1), example=example)
    client.log_artifacts(run_id, str(root / "saved" / MODEL_DIR), MODEL_DIR)
    client.set_terminated(run_id)
    register_model(client, "ecg", run_id, {"test/auroc": "0.5"})

    data = root / "data"
    labels = team_data(
        data,
        rows=60,
        shape=SHAPE,
        columns=lambda index: {"label": index % 2, "hos": HOSPITALS[index % 3], "age": 40 + index},
    )
    pd.read_csv(labels).drop(columns=["label"]).to_csv(data / "unlabelled.csv", index=False)
    return {"root": root, "uri": uri, "run_id": run_id, "data": data, "params": params}


def predict(store: dict, capsys, *args: str) -> tuple[int, list[str], list[str]]:
    try:
        code = main(["predict", *args, "--tracking-uri", store["uri"]])
    except SystemExit as exit_:  # argparse refusing an argument
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err.strip().splitlines()


def _runs(store: dict, role: str) -> list:
    client = store_client(store["uri"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`{ROLE_TAG}` = '{role}'")


def test_an_unlabelled_csv_is_scored_row_by_row(store: dict, capsys, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    code, lines, _ = predict(store, capsys, store["run_id"], "--labels", str(store["data"] / "unlabelled.csv"), "-o", str(out))
    assert code == 0 and lines[-1] == str(out)
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["row", "path", "hos", "age", "proba_0", "proba_1", "predicted"]
    assert scored["row"].tolist() == list(range(60))
    np.testing.assert_allclose(scored[["proba_0", "proba_1"]].sum(axis=1), 1.0, atol=1e-6)
    assert (scored["predicted"] == scored[["proba_0", "proba_1"]].to_numpy().argmax(axis=1)).all()
    # The same rows through the model's own weights, read by hand.
    x = np.stack([np.load(store["data"] / path) for path in scored["path"]])
    torch.manual_seed(0)
    model = ECGCNN1d(store["params"]).build_model(SHAPE, 2).eval()
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(scored[["proba_0", "proba_1"]].to_numpy(), expected, atol=1e-6)
    assert not [run for run in _runs(store, "prediction") if run.data.params.get("labels") == str(store["data"] / "unlabelled.csv")]


def test_a_labelled_csv_gets_metrics_per_hospital_on_a_prediction_run(store: dict, capsys, tmp_path: Path) -> None:
    labels = store["data"] / "labels.csv"
    code, lines, err = predict(store, capsys, "models:/ecg/1", "--labels", str(labels), "-o", str(tmp_path / "p.csv"))
    assert code == 0, err
    groups = [line.split()[0] for line in lines if line.startswith(("all", "hos="))]
    assert groups == ["all", *(f"hos={h}" for h in HOSPITALS)]
    run = next(run for run in _runs(store, "prediction") if run.data.params["labels"] == str(labels))
    assert run.info.status == "FINISHED" and run.data.tags[MODEL_TAG] == "models:/ecg/1"
    assert f"logged on MLflow run {run.info.run_id}" in lines
    scored = pd.read_csv(tmp_path / "p.csv")
    for hospital in HOSPITALS:
        rows = scored[scored["hos"] == hospital]
        accuracy = float((rows["predicted"] == rows["label"]).mean())
        assert run.data.metrics[f"hos/{hospital}/accuracy"] == pytest.approx(accuracy)
    assert run.data.metrics["accuracy"] == pytest.approx(float((scored["predicted"] == scored["label"]).mean()))
    artifacts = {item.path for item in store_client(store["uri"]).list_artifacts(run.info.run_id)}
    assert artifacts == {"predictions.csv", "metrics_by_group.csv"}


def test_every_form_of_model_reference_scores_alike(store: dict, capsys, tmp_path: Path) -> None:
    store_client(store["uri"]).set_registered_model_alias("ecg", "champion", "1")
    labels = str(store["data"] / "unlabelled.csv")
    outputs = []
    for form in (store["run_id"], f"runs:/{store['run_id']}/model", "models:/ecg/1", "models:/ecg@champion"):
        out = tmp_path / f"{len(outputs)}.csv"
        assert predict(store, capsys, form, "--labels", labels, "-o", str(out))[0] == 0
        outputs.append(pd.read_csv(out))
    for other in outputs[1:]:
        pd.testing.assert_frame_equal(outputs[0], other)


def test_pyfunc_load_model_scores_as_trial_predict(store: dict, capsys, tmp_path: Path, global_tracking_uri) -> None:
    out = tmp_path / "p.csv"
    assert predict(store, capsys, "models:/ecg/1", "--labels", str(store["data"] / "unlabelled.csv"), "-o", str(out))[0] == 0
    scored = pd.read_csv(out)
    global_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model("models:/ecg/1")
    x = np.stack([np.load(store["data"] / path) for path in scored["path"]])
    answer = model.predict(x)
    assert list(answer.columns) == ["proba_0", "proba_1"]
    np.testing.assert_allclose(answer.to_numpy(), scored[["proba_0", "proba_1"]].to_numpy(), atol=1e-7)


def test_tta_averages_seeded_augmented_passes(store: dict, capsys, tmp_path: Path) -> None:
    labels = str(store["data"] / "unlabelled.csv")

    def probabilities(*extra: str) -> np.ndarray:
        out = tmp_path / "tta.csv"
        assert predict(store, capsys, store["run_id"], "--labels", labels, "-o", str(out), *extra)[0] == 0
        return pd.read_csv(out)[["proba_0", "proba_1"]].to_numpy()

    plain, tta, again, other_seed = (
        probabilities(),
        probabilities("--tta", "4"),
        probabilities("--tta", "4"),
        probabilities("--tta", "4", "--seed", "1"),
    )
    np.testing.assert_array_equal(tta, again)
    assert np.abs(tta - plain).max() > 1e-6 and np.abs(tta - other_seed).max() > 1e-6


def test_an_ensemble_averages_its_members(tmp_path: Path) -> None:
    params = ECGCNN1d.parse_params({"channels": 4})
    members = _members(params, 2)
    example = np.zeros((1, *SHAPE), np.float32)
    ensemble = Predictor.load(save_model(tmp_path / "e", _spec(params), members, example=example) / "artifacts" / "trial")
    x = np.random.default_rng(1).normal(size=(7, *SHAPE)).astype(np.float32)
    alone = [Predictor(_spec(params), [weights]).predict_proba(x) for weights in members]
    np.testing.assert_allclose(ensemble.predict_proba(x), (alone[0] + alone[1]) / 2, atol=1e-7)


def test_tta_needs_the_solver_to_have_augmentations() -> None:
    params = ECGCNN1d.parse_params({"channels": 4})
    predictor = Predictor(_spec(params), _members(params, 1))
    with pytest.raises(ConfigError, match=r"--tta: the model's solver was trained without augmentations"):
        predictor.predict_proba(np.zeros((2, *SHAPE), np.float32), tta=2)


def test_metric_keys_keep_to_the_characters_mlflow_allows() -> None:
    assert metric_key("all", "auroc") == "auroc"
    assert metric_key("hos=st elin", "auroc") == "hos/st elin/auroc"
    assert metric_key("site=a=b/c", "loss") == "site/a_b_c/loss"


def _write_csv(folder: Path, name: str, rows: list[dict]) -> Path:
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing csv", r"--labels: file not found: .*nowhere\.csv"),
        ("missing file", r"data file .*gone\.npy: file not found"),
        ("wrong shape", r"data file .*: shape \[3, 10\], but the model takes \[2, 64\]"),
        ("outside root", r"escape|outside"),
        ("unknown class", r"column 'label' holds 7 \(1 rows\), which the model does not know; its classes: 0, 1"),
        ("unknown run", r"MODEL: no model at runs:/f{32}/model in sqlite:///"),
        ("not a model", r"MODEL: expected a sweep's parent run id, runs:/ID/model, models:/NAME/VERSION or models:/NAME@alias, got 'ecg'"),
        ("unknown version", r"MODEL: no model at models:/ecg/9 in sqlite:///"),
        ("unknown by column", r"--by: column 'ward' not in the labels CSV"),
        ("missing out folder", r"-o: folder not found: .*nofolder"),
        ("bad tta", r"argument --tta: expected an integer >= 0, got -1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(store: dict, capsys, tmp_path: Path, case: str, expected: str) -> None:
    data = store["data"]
    labels = str(data / "labels.csv")
    out = tmp_path / "out.csv"
    model, extra = store["run_id"], []
    if case == "missing csv":
        labels = str(tmp_path / "nowhere.csv")
    elif case == "missing file":
        labels = str(_write_csv(data, "gone.csv", [{"path": "records/gone.npy", "hos": "x"}]))
    elif case == "wrong shape":
        np.save(data / "odd.npy", np.zeros((3, 10), np.float32))
        labels = str(_write_csv(data, "odd.csv", [{"path": "odd.npy", "hos": "x"}] * 3))
    elif case == "outside root":
        labels = str(_write_csv(data, "outside.csv", [{"path": "../elsewhere.npy", "hos": "x"}]))
    elif case == "unknown class":
        labels = str(_write_csv(data, "seven.csv", [{"path": "records/0000.npy", "label": 7, "hos": "x"}]))
    elif case == "unknown run":
        model = "f" * 32
    elif case == "not a model":
        model = "ecg"
    elif case == "unknown version":
        model = "models:/ecg/9"
    elif case == "unknown by column":
        extra = ["--by", "ward"]
    elif case == "missing out folder":
        out = tmp_path / "nofolder" / "out.csv"
    elif case == "bad tta":
        extra = ["--tta", "-1"]
    before = len(_runs(store, "prediction"))
    code, _, err = predict(store, capsys, model, "--labels", labels, "-o", str(out), *extra)
    assert code == 2
    message = err[-1]
    assert "Traceback" not in "\n".join(err)
    assert message.startswith(("trial: error: ", "trial predict: error: ")), err
    if case != "bad tta":  # argparse's own errors come after its usage line
        assert len(err) == 1, err
    assert re.search(expected, message), message
    assert not out.exists() and len(_runs(store, "prediction")) == before
