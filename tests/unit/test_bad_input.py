"""Bad input through the CLI: one line on stderr naming the field or file, exit code 2,
no traceback, no MLflow run left RUNNING, no partial manifest or cache entry.

These fail before Ray starts, so they run in-process and fast.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.team_data import team_data
from trial.cli import main


@pytest.fixture
def user_data(tmp_path: Path) -> Path:
    """A team's data folder: labels.csv + one .npy per recording, 2 leads x 64 samples."""
    folder = tmp_path / "ecg"
    team_data(
        folder,
        rows=120,
        shape=(2, 64),
        columns=lambda index: {"label": int(index % 4 == 0), "hos": f"h{index % 3}", "patient_id": index // 2},
    )
    return folder


def run(tmp_path: Path, capsys, data: dict, **sections) -> tuple[int, list[str]]:
    config = {
        "name": "bad",
        "data": data,
        "solver": {"name": "ecg_cnn1d", "params": {"epochs": 1}},
        "search": {"space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "storage": str(tmp_path / "runs"),
        **sections,
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    code = main(["run", "--config", str(tmp_path / "bad.yaml")])
    return code, capsys.readouterr().err.strip().splitlines()


def assert_nothing_half_written(tmp_path: Path, *, complete_manifest: bool = False) -> None:
    db = tmp_path / "mlflow.db"
    if db.exists():
        client = MlflowClient(f"sqlite:///{db}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []
    cache = tmp_path / "runs" / "cache"
    if cache.exists():
        leftovers = [
            p.name
            for p in cache.iterdir()
            if (p.name.startswith("manifest-") and not complete_manifest) or p.suffix == ".tmp" or ".partial" in p.name
        ]
        assert leftovers == []


def labels_of(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "labels.csv")


def test_good_user_data_passes_the_checks(user_data, tmp_path, capsys, monkeypatch):
    # The same set-up as every case below, minus the mistake, gets past data preparation.
    from trial import ray_backend

    def stop_before_ray(address=None, **_):
        raise SystemExit("reached Ray")

    monkeypatch.setattr(ray_backend, "connect_ray", stop_before_ray)
    with pytest.raises(SystemExit, match="reached Ray"):
        run(tmp_path, capsys, {"labels": str(user_data / "labels.csv"), "stratify": ["label", "hos"], "group": "patient_id"})


@pytest.mark.parametrize(
    "change, data, expected",
    [
        ("none", {"labels": "missing/labels.csv"}, "data.labels: file not found"),
        ("none", {"stratify": ["label", "site"]}, "column 'site' not found"),
        ("none", {"group": "subject"}, "column 'subject' not found"),
        ("nan_label", {}, "label"),
        ("rare_class", {}, "class"),
        ("one_patient_positive", {"group": "patient_id"}, "patient_id"),
        ("missing_file", {}, "records/0003.npy"),
        ("corrupt_file", {}, "records/0005.npy: cannot load as .npy: not a .npy array file"),
        ("wrong_shape", {}, "shape (3, 64), expected (2, 64)"),
        ("nan_values", {}, "records/0007.npy"),
        ("escaping_path", {}, "../outside.npy"),
        ("not_csv", {}, "labels.csv"),
        ("unexpected_label", {"classes": [0, 1]}, "column 'label' has values not in data.classes [0, 1]: 2 (1 rows)"),
    ],
)
@pytest.mark.parametrize("debug", [False, True], ids=["full", "debug"])
def test_bad_data_is_one_line_exit_2(user_data, tmp_path, capsys, change, data, expected, debug):
    # --debug trains on a sample but must refuse whatever the full run refuses.
    labels = labels_of(user_data)
    if change == "nan_label":
        labels.loc[4, "label"] = np.nan
    elif change == "rare_class":
        labels.loc[:, "label"] = 0
        labels.loc[0, "label"] = 1
    elif change == "one_patient_positive":
        # Enough positive rows for every split, but all of one patient's.
        labels["patient_id"] = np.where(labels.index < 12, 0, labels["patient_id"] + 1)
        labels["label"] = (labels["patient_id"] == 0).astype(int)
    elif change == "missing_file":
        os.remove(user_data / "records/0003.npy")
    elif change == "corrupt_file":
        (user_data / "records/0005.npy").write_bytes(b"\x00garbage" * 10)
    elif change == "wrong_shape":
        np.save(user_data / "records/0006.npy", np.zeros((3, 64), np.float32))
    elif change == "nan_values":
        np.save(user_data / "records/0007.npy", np.full((2, 64), np.nan, np.float32))
    elif change == "unexpected_label":
        labels.loc[7, "label"] = 2
    elif change == "escaping_path":
        np.save(user_data.parent / "outside.npy", np.zeros((2, 64), np.float32))
        labels.loc[2, "path"] = "../outside.npy"
    if change == "not_csv":
        (user_data / "labels.csv").write_bytes(b"\xff\xfe\x00binary\x00" * 20)
    elif change != "none":
        labels.to_csv(user_data / "labels.csv", index=False)
    data = {"labels": str(user_data / "labels.csv"), **data}
    if not Path(data["labels"]).is_absolute():
        data["labels"] = str(tmp_path / data["labels"])

    code, err = run(tmp_path, capsys, data, debug=debug)

    assert code == 2
    assert len(err) == 1 and err[0].startswith("trial: error: "), err
    assert expected in err[0]
    assert "allow_pickle" not in err[0]
    assert_nothing_half_written(tmp_path)


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("sqlite:////proc/no-such-dir/mlflow.db", "tracking.uri: cannot use 'sqlite:////proc/no-such-dir/mlflow.db'"),
        ("http://127.0.0.1:9", "tracking.uri: cannot reach 'http://127.0.0.1:9'"),
    ],
)
def test_unusable_tracking_uri(user_data, tmp_path, capsys, uri, expected):
    code, err = run(tmp_path, capsys, {"labels": str(user_data / "labels.csv")}, tracking={"uri": uri})
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"trial: error: {expected}")


def test_storage_not_writable(user_data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = run(tmp_path, capsys, {"labels": str(user_data / "labels.csv")}, storage=str(blocker / "runs"))
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"trial: error: storage: {blocker / 'runs'} is not writable")
    assert_nothing_half_written(tmp_path)


def test_a_fresh_process_prints_only_the_error_line(tmp_path):
    # In-process tests import MLflow early; a real CLI process imports it late, and MLflow
    # must still not add its own INFO lines about creating the store.
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "trial" / "run.py"), "--set", "data.labels=nope.csv", "--set", "data.dataset=null"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"trial: error: data.labels: file not found: {tmp_path / 'nope.csv'}"]


_TEAM_CODE = '''
import numpy as np
import torch
from pydantic import Field
from trial import Solver, SolverParams

class Net(Solver):
    class Params(SolverParams):
        hidden: int = Field(8, ge=1)
    def build_model(self, input_shape, num_classes):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(input_shape)), num_classes))

class Misfit(Solver):
    def build_model(self, input_shape, num_classes):
        return torch.nn.Linear(3, num_classes)  # ignores the input shape

def text_reader(path):
    return "not an array"

def int_reader(path):
    return np.load(path).astype(np.int64)

def sometimes_fails(path):
    if path.name == "0009.npy":
        raise OSError("the vendor format's header is damaged")
    return np.load(path)

def shuffle(x):
    return x
'''


@pytest.mark.parametrize(
    "solver, data, expected",
    [
        ({"name": "team_code:Nope"}, {}, "solver.name: module 'team_code' (imported from "),
        ({"name": "team_code:text_reader"}, {}, "solver.name: 'team_code:text_reader' is the function 'text_reader', not a subclass of trial.Solver"),
        ({"name": "broken_code:Net"}, {}, "solver.name: importing 'broken_code' (from 'broken_code:Net') failed: NameError: name 'undefined_thing' is not defined"),
        ({"name": "team_code:Net", "params": {"hidden": 0}}, {}, "solver.params.hidden: must be greater than or equal to 1, got 0 (int)"),
        ({"name": "team_code:Net", "params": {"augment": ["team_code:shuffle"]}}, {}, "solver.params.augment: 'team_code:shuffle' has the signature (x); expected a function (x, rng) -> x"),
        ({"name": "team_code:Net"}, {"reader": "team_code:text_reader"}, "data.reader: team_code:text_reader returned a str for "),
        ({"name": "team_code:Net"}, {"reader": "team_code:missing_reader"}, "data.reader: module 'team_code' (imported from "),
        ({"name": "team_code:Net"}, {"reader": "team_code:sometimes_fails"}, "records/0009.npy: team_code:sometimes_fails failed: OSError: the vendor format's header is damaged"),
        ({"name": "team_code:Misfit"}, {}, "pre-flight: solver 'team_code:Misfit' with its base params failed on the data: RuntimeError: "),
        ({"name": "tabular_mlp"}, {}, "solver.name: 'tabular_mlp' trains on tabular data, and this data's samples are shaped [2, 64] (signal data)"),
    ],
)
def test_a_teams_code_that_does_not_fit_is_one_line_before_ray_and_mlflow(user_data, tmp_path, capsys, monkeypatch, solver, data, expected):
    (tmp_path / "team_code.py").write_text(_TEAM_CODE)
    (tmp_path / "broken_code.py").write_text("undefined_thing()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    for name in ("team_code", "broken_code"):
        monkeypatch.delitem(__import__("sys").modules, name, raising=False)
    from trial import ray_backend

    monkeypatch.setattr(ray_backend, "connect_ray", lambda *a, **k: pytest.fail("Ray must not start"))
    code, err = run(tmp_path, capsys, {"labels": str(user_data / "labels.csv"), **data}, solver=solver)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("trial: error: "), err
    assert expected in err[0], err[0]
    # The pre-flight runs on the prepared data: its manifest is complete, reused next time.
    assert_nothing_half_written(tmp_path, complete_manifest=solver["name"] in ("team_code:Misfit", "tabular_mlp"))


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan", ""])
@pytest.mark.parametrize("debug", [False, True], ids=["full", "debug"])
def test_a_bad_ray_train_poll_interval_is_one_line_exit_2(user_data, tmp_path, capsys, monkeypatch, value, debug):
    # trial hands the user's own value to every Train controller, which reads it with float().
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", value)
    code, err = run(tmp_path, capsys, {"labels": str(user_data / "labels.csv")}, debug=debug)

    assert code == 2
    assert err == [f"trial: error: environment variable RAY_TRAIN_HEALTH_CHECK_INTERVAL_S: {value!r} is not a positive number of seconds"]
    assert not (tmp_path / "mlflow.db").exists()
    assert_nothing_half_written(tmp_path)


def test_a_users_own_ray_train_poll_interval_passes(user_data, tmp_path, capsys, monkeypatch):
    from trial import ray_backend

    def stop_before_ray(address=None, **_):
        raise SystemExit("reached Ray")

    monkeypatch.setattr(ray_backend, "connect_ray", stop_before_ray)
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    with pytest.raises(SystemExit, match="reached Ray"):
        run(tmp_path, capsys, {"labels": str(user_data / "labels.csv")})
