"""Built-in datasets: layout on disk, determinism, reuse and atomic generation."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trial import datasets
from trial.datasets import builtin_datasets, dataset_defaults, materialize
from trial.errors import ConfigError, DataError

ECG_COLUMNS = ["path", "label", "hos", "age", "age_group", "patient_id"]


def _digest(folder: Path) -> str:
    """One hash over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def ecg_1000(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    csv = materialize("demo_ecg", tmp_path_factory.mktemp("ecg"), params={"n_recordings": 1000})
    return pd.read_csv(csv)


def test_builtin_names() -> None:
    assert builtin_datasets() == ["breast_cancer", "demo_ecg", "digits"]


def test_unknown_dataset_lists_builtins(tmp_path: Path) -> None:
    message = "data.dataset: unknown dataset 'mnist'; built-in: breast_cancer, demo_ecg, digits"
    with pytest.raises(ConfigError, match=f"^{message}$"):
        materialize("mnist", tmp_path)
    with pytest.raises(ConfigError, match=f"^{message}$"):
        dataset_defaults("mnist")
    assert list(tmp_path.iterdir()) == []


def test_demo_ecg_layout(tmp_path: Path) -> None:
    csv = materialize("demo_ecg", tmp_path, params={"n_recordings": 200})
    assert csv.name == "labels.csv" and csv.parent.parent == tmp_path
    table = pd.read_csv(csv)
    assert list(table.columns) == ECG_COLUMNS
    assert len(table) == 200
    assert table["path"].str.fullmatch(r"records/\d{6}\.npy").all()
    assert set(table["label"]) == {0, 1}
    assert set(table["age_group"]) <= {"<40", "40-60", "60-80", "80+"}
    assert table["age"].between(18, 95).all()
    first = np.load(csv.parent / table["path"][0])
    assert first.shape == (3, 1000) and first.dtype == np.float32
    assert all((csv.parent / path).is_file() for path in table["path"])
    assert json.loads((csv.parent / "dataset.json").read_text())["params"]["n_recordings"] == 200


def test_demo_ecg_params_shape_the_recordings(tmp_path: Path) -> None:
    csv = materialize("demo_ecg", tmp_path, params={"n_recordings": 20, "leads": 1, "length": 500})
    table = pd.read_csv(csv)
    assert len(table) == 20
    assert np.load(csv.parent / table["path"][0]).shape == (1, 500)


def test_demo_ecg_is_deterministic(tmp_path: Path) -> None:
    params = {"n_recordings": 200, "seed": 7}
    first = materialize("demo_ecg", tmp_path / "a", params=params)
    second = materialize("demo_ecg", tmp_path / "b", params=params)
    assert _digest(first.parent) == _digest(second.parent)
    other_seed = materialize("demo_ecg", tmp_path / "c", params={**params, "seed": 8})
    assert _digest(other_seed.parent) != _digest(first.parent)


def test_demo_ecg_positive_rate_is_about_15_percent(ecg_1000: pd.DataFrame) -> None:
    assert 0.11 <= ecg_1000["label"].mean() <= 0.19


def test_demo_ecg_patients_have_several_recordings_and_one_label(ecg_1000: pd.DataFrame) -> None:
    per_patient = ecg_1000.groupby("patient_id")
    assert per_patient["label"].nunique().max() == 1
    assert per_patient["hos"].nunique().max() == 1
    assert 2.5 <= per_patient.size().mean() <= 4.5
    assert (per_patient.size() >= 2).mean() > 0.5


def test_demo_ecg_hospitals_differ(ecg_1000: pd.DataFrame) -> None:
    rates = ecg_1000.groupby("hos")["label"].mean()
    assert len(rates) >= 3
    assert rates.max() - rates.min() > 0.05


def test_demo_ecg_signals_are_finite_millivolts(tmp_path: Path) -> None:
    csv = materialize("demo_ecg", tmp_path, params={"n_recordings": 50})
    signals = np.stack([np.load(csv.parent / path) for path in pd.read_csv(csv)["path"]])
    assert np.isfinite(signals).all()
    assert 0.3 < np.abs(signals).max() < 10


# ---- folders: naming, reuse, atomicity ---------------------------------------------------


@pytest.fixture
def stub_ecg(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, int]]:
    """Replaces the demo_ecg generator by a fast stub; returns the params of each call."""
    calls: list[dict[str, int]] = []

    def generate(folder: Path, params: dict[str, int]) -> None:
        calls.append(dict(params))
        (folder / "labels.csv").write_text("path,label\n")

    builtin = dataclasses.replace(datasets._BUILTINS["demo_ecg"], generate=generate)
    monkeypatch.setitem(datasets._BUILTINS, "demo_ecg", builtin)
    return calls


def test_default_params_use_the_plain_folder_name(tmp_path: Path, stub_ecg: list[dict[str, int]]) -> None:
    explicit = {"n_recordings": 2000, "leads": 3, "length": 1000, "seed": 0}
    assert materialize("demo_ecg", tmp_path, params=explicit) == tmp_path / "demo_ecg" / "labels.csv"
    assert materialize("demo_ecg", tmp_path) == tmp_path / "demo_ecg" / "labels.csv"
    other = materialize("demo_ecg", tmp_path, params={"seed": 1})
    assert other.parent.name.startswith("demo_ecg-") and len(other.parent.name) == len("demo_ecg-") + 8
    assert stub_ecg == [explicit, {**explicit, "seed": 1}]


def test_existing_dataset_is_reused(tmp_path: Path, stub_ecg: list[dict[str, int]]) -> None:
    first = materialize("demo_ecg", tmp_path, params={"n_recordings": 10})
    (first.parent / "note.txt").write_text("kept")
    assert materialize("demo_ecg", tmp_path, params={"n_recordings": 10}) == first
    assert len(stub_ecg) == 1
    assert (first.parent / "note.txt").read_text() == "kept"


def test_failure_mid_generation_leaves_nothing_to_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"n_recordings": 40}
    real_save = np.save
    saved = []

    def failing_save(path: Path, array: np.ndarray) -> None:
        if len(saved) == 20:
            raise OSError("disk full")
        saved.append(path)
        real_save(path, array)

    monkeypatch.setattr(datasets.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        materialize("demo_ecg", tmp_path, params=params)
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(datasets.np, "save", real_save)
    csv = materialize("demo_ecg", tmp_path, params=params)
    assert len(pd.read_csv(csv)) == 40
    assert _digest(csv.parent) == _digest(materialize("demo_ecg", tmp_path / "fresh", params=params).parent)


def test_leftover_partial_folder_is_ignored(tmp_path: Path, stub_ecg: list[dict[str, int]]) -> None:
    leftover = tmp_path / ".demo_ecg.partial-0123456789ab"
    leftover.mkdir()
    (leftover / "labels.csv").write_text("half")
    assert materialize("demo_ecg", tmp_path).parent == tmp_path / "demo_ecg"
    assert len(stub_ecg) == 1


def test_folder_without_marker_is_an_error(tmp_path: Path, stub_ecg: list[dict[str, int]]) -> None:
    (tmp_path / "demo_ecg").mkdir()
    with pytest.raises(DataError, match="has no dataset.json"):
        materialize("demo_ecg", tmp_path)
    assert stub_ecg == []


def test_concurrent_writer_that_finishes_first_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def generate(folder: Path, params: dict[str, int]) -> None:
        # Another process completes the same dataset while this one is writing.
        other = tmp_path / "digits"
        other.mkdir()
        (other / "labels.csv").write_text("theirs")
        (other / "dataset.json").write_text("{}")
        (folder / "labels.csv").write_text("ours")

    builtin = dataclasses.replace(datasets._BUILTINS["digits"], generate=generate)
    monkeypatch.setitem(datasets._BUILTINS, "digits", builtin)
    csv = materialize("digits", tmp_path)
    assert csv.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]


# ---- params ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_recording": 10}, "data.dataset_params.n_recording: unknown param for dataset 'demo_ecg'; "
         "known: leads, length, n_recordings, seed"),
        ({"n_recordings": "200"}, "data.dataset_params.n_recordings: got '200' (str), expected an int in"),
        ({"n_recordings": 200.0}, "data.dataset_params.n_recordings: got 200.0 (float), expected an int in"),
        ({"leads": True}, "data.dataset_params.leads: got True (bool), expected an int in"),
        ({"n_recordings": 0}, "data.dataset_params.n_recordings: got 0, expected an int in [1, "),
        ({"leads": 13}, "data.dataset_params.leads: got 13, expected an int in [1, 12]"),
        ({"seed": -1}, "data.dataset_params.seed: got -1, expected an int in [0, "),
    ],
)
def test_bad_params_name_their_key(tmp_path: Path, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        materialize("demo_ecg", tmp_path, params=params)
    assert str(error.value).startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_dataset_without_params_rejects_any(tmp_path: Path) -> None:
    message = r"^data\.dataset_params\.seed: unknown param for dataset 'digits'; known: none$"
    with pytest.raises(ConfigError, match=message):
        materialize("digits", tmp_path, params={"seed": 1})


# ---- scikit-learn datasets and config defaults ------------------------------------------


def test_digits_layout(tmp_path: Path) -> None:
    csv = materialize("digits", tmp_path)
    assert csv == tmp_path / "digits" / "labels.csv"
    table = pd.read_csv(csv)
    assert list(table.columns) == ["path", "label"]
    assert len(table) == 1797 and set(table["label"]) == set(range(10))
    image = np.load(csv.parent / table["path"][0])
    assert image.shape == (1, 8, 8) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_breast_cancer_layout(tmp_path: Path) -> None:
    csv = materialize("breast_cancer", tmp_path)
    table = pd.read_csv(csv)
    features = dataset_defaults("breast_cancer")["features"]
    assert list(table.columns) == [*features, "label"]
    assert len(features) == 30 and "mean_radius" in features and "worst_concave_points" in features
    assert all(name == name.lower() and " " not in name for name in features)
    assert len(table) == 569
    assert table["label"].sum() == 212  # malignant is the positive class
    assert sorted(p.name for p in csv.parent.iterdir()) == ["dataset.json", "labels.csv"]


@pytest.mark.parametrize("name", ["breast_cancer", "demo_ecg", "digits"])
def test_defaults_name_columns_the_csv_has(tmp_path: Path, name: str) -> None:
    defaults = dataset_defaults(name)
    assert set(defaults) == {"path_column", "target", "features", "stratify", "group", "balance"}
    params = {"n_recordings": 20} if name == "demo_ecg" else None
    columns = set(pd.read_csv(materialize(name, tmp_path, params=params), nrows=1).columns)
    named = [defaults["path_column"], defaults["target"], defaults["group"]]
    named += (defaults["features"] or []) + (defaults["stratify"] or []) + (defaults["balance"] or [])
    assert {column for column in named if column is not None} <= columns
    assert (defaults["path_column"] is None) == (name == "breast_cancer")


def test_demo_ecg_defaults() -> None:
    assert dataset_defaults("demo_ecg") == {
        "path_column": "path",
        "target": "label",
        "features": None,
        "stratify": ["label", "hos"],
        "group": "patient_id",
        "balance": ["label", "age_group"],
    }
    # Callers may edit what they get without changing the next caller's defaults.
    dataset_defaults("demo_ecg")["stratify"].append("age")
    assert dataset_defaults("demo_ecg")["stratify"] == ["label", "hos"]
