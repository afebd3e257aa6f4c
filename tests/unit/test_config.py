"""Every config mistake is one ConfigError naming its key; good configs resolve fully."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from trial.cli import main
from trial.config import apply_overrides, load_config, read_yaml, resolve
from trial.errors import ConfigError

BASE = {
    "name": "t",
    "data": {"dataset": "demo_ecg"},
    "solver": {"name": "ecg_cnn1d"},
    "search": {"metric": "valid/auroc", "space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
}


def with_change(path: str, value) -> dict:
    raw = copy.deepcopy(BASE)
    return apply_overrides(raw, [f"{path}={value}"]) if isinstance(value, str) else _set(raw, path, value)


def _set(raw: dict, path: str, value) -> dict:
    node = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


def test_demo_config_resolves_with_dataset_and_solver_defaults():
    config = load_config()
    assert config.name == "demo-ecg"
    assert config.data.stratify == ("label", "hos") and config.data.group == "patient_id"
    assert config.solver.params["epochs"] == 8 and "dropout" in config.solver.params
    assert config.metric_mode == "max"
    assert set(config.search.space) == {"lr", "weight_decay"}
    # NNI's form is read into the same distribution.
    assert config.search.space["weight_decay"].type == "loguniform"
    assert config.search.space["weight_decay"].low == 1.0e-6


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("data.foo", 1, "data.foo: unknown key; allowed here: dataset,"),
        ("bogus", 1, "bogus: unknown key; allowed here: name, seed, data,"),
        ("seed", "x", "seed: must be a valid integer, got 'x'"),
        ("search.num_samples", 2.5, "search.num_samples: must be a valid integer, got 2.5"),
        ("search.num_samples", 0, "search.num_samples: must be greater than or equal to 1"),
        ("search.mode", "up", "search.mode: must be 'min' or 'max', got 'up'"),
        ("search.scheduler", {"type": "hyperband"}, "search.scheduler.type: must be 'asha' or 'none'"),
        ("search.metric", "valid/bleu", "search.metric: 'valid/bleu' is never reported; reported: valid/loss"),
        ("search.space.lr", {"type": "loguniform", "low": 0.0, "high": 1.0}, "search.space.lr: a log scale needs low > 0"),
        ("search.space.lr", {"type": "uniform", "low": 0.5, "high": 0.1}, "search.space.lr: low must be < high"),
        ("search.space.lr", {"type": "gauss", "low": 0.1, "high": 1.0}, "search.space.lr.type: must be 'uniform', 'loguniform', 'int' or 'choice', got 'gauss'"),
        ("search.space.lr", {"type": "uniform", "low": 0.1}, "search.space.lr: uniform needs `low` and `high`"),
        ("search.space.lr", {"type": "loguniform", "low": 1e-4, "high": 1e-2, "q": 2}, "search.space.lr.q: unknown key; allowed here: type, low, high, step, log, values"),
        ("search.space.lr", {"_type": "lognormal", "_value": [0, 1]}, "search.space.lr._type: 'lognormal' has no Optuna counterpart; supported: choice,"),
        ("search.space.lr", {"_type": "uniform", "_value": [0.1]}, "search.space.lr._value: uniform expects 2 numbers"),
        ("search.space.beta3", {"type": "uniform", "low": 0.1, "high": 0.9}, "search.space.beta3: not a param of solver 'ecg_cnn1d'; its params: "),
        ("search.space.lr", {"type": "choice", "values": []}, "search.space.lr: choice needs a non-empty `values` list"),
        ("search.space.lr", {"type": "int", "low": 1.5, "high": 4}, "search.space.lr: int bounds must be whole numbers"),
        ("solver.name", "resnet", "solver.name: unknown solver 'resnet'; registered: ecg_cnn1d"),
        ("solver.params", {"epochs": 0}, "solver.params.epochs"),
        ("solver.params", {"lrr": 0.1}, "solver.params.lrr: unknown param for solver 'ecg_cnn1d'"),
        ("solver.params", {"lr": "1e-3"}, "solver.params.lr"),
        ("data.split", {"valid": 0.5, "test": 0.6}, "data.split: valid + test must be < 1"),
        ("data.split", {"folds": 5, "fold": 5}, "data.split: fold=5 must be < folds=5"),
        ("data.split", {"valid": 0.1, "folds": 3}, "data.split.valid: unknown key; allowed here: valid, test (hold-out) or folds, fold, test (k-fold)"),
        ("data.split", {"valid": 1.5}, "data.split.valid: must be less than 1"),
        ("data.on_bad_file", "ignore", "data.on_bad_file: must be 'error' or 'skip', got 'ignore'"),
        ("data.labels", "x.csv", "data: give exactly one of data.dataset or data.labels"),
        ("data.dataset", "mnist", "data.dataset: unknown dataset 'mnist'"),
        ("scaling.num_workers", 0, "scaling.num_workers: must be greater than or equal to 1"),
        ("scaling.use_gpu", "yes please", "scaling.use_gpu: must be a valid boolean"),
        ("tracking", "sqlite", "tracking: must be a valid dictionary or instance of TrackingConfig"),
        ("name", "team/ecg", "name: 'team/ecg' names the sweep's folder in Tune's storage; use no '/'"),
        ("name", "..", "name: '..' names the sweep's folder"),
        ("search.space.lr", {"type": "uniform", "low": 0.1, "high": 0.9, "log": True, "step": 0.1}, "search.space.lr: Optuna refuses this range: "),
        ("search.space.lr", {"type": "choice", "values": [[0.1], [0.2]]}, "search.space.lr: choice values must be numbers, text, true/false or null, got [0.1]"),
    ],
)
def test_config_errors_name_the_key(path, value, expected):
    with pytest.raises(ConfigError) as error:
        resolve(with_change(path, value))
    assert str(error.value).startswith(expected), str(error.value)
    assert "\n" not in str(error.value)


def test_yaml_text_number_gets_a_hint():
    with pytest.raises(ConfigError, match=r"seed: .*got '1e-3' \(str\)"):
        resolve(with_change("seed", "1e-3"))
    raw = copy.deepcopy(BASE)
    raw["search"]["space"]["lr"]["low"] = "1e-4"
    with pytest.raises(ConfigError, match=r"search.space.lr.low: expected a number, got the text '1e-4' \(YAML reads 1e-3 as text: write 1.0e-3\)"):
        resolve(raw)


def test_missing_required_sections():
    raw = copy.deepcopy(BASE)
    del raw["solver"]
    with pytest.raises(ConfigError, match=r"^solver: required key is missing$"):
        resolve(raw)


def test_overrides_parse_values_as_yaml():
    raw = apply_overrides(
        copy.deepcopy(BASE),
        ["solver.params.epochs=3", "search.num_samples=4", "search.space.lr={type: loguniform, low: 1.0e-4, high: 1.0e-2}"],
    )
    config = resolve(raw)
    assert config.solver.params["epochs"] == 3 and config.search.num_samples == 4
    assert config.search.space["lr"].high == 1.0e-2


@pytest.mark.parametrize(
    "override, expected",
    [
        ("epochs", "--set 'epochs': expected KEY.PATH=VALUE"),
        ("a..b=1", "--set 'a..b=1': expected KEY.PATH=VALUE"),
        ("seed.x=1", "--set seed.x: seed is a value (42), not a section"),
        ("name={a: [", "--set name: value '{a: [' is not valid YAML"),
    ],
)
def test_bad_overrides(override, expected):
    raw = copy.deepcopy(BASE) | {"seed": 42}
    with pytest.raises(ConfigError) as error:
        apply_overrides(raw, [override])
    assert str(error.value).startswith(expected)


def test_three_searched_params_warn():
    raw = copy.deepcopy(BASE)
    raw["search"]["space"].update(
        weight_decay={"type": "loguniform", "low": 1e-6, "high": 1e-2},
        dropout={"type": "uniform", "low": 0.0, "high": 0.5},
    )
    with pytest.warns(UserWarning, match="searches 3 params"):
        resolve(raw)


def test_two_searched_params_do_not_warn():
    raw = copy.deepcopy(BASE)
    raw["search"]["space"]["weight_decay"] = {"_type": "loguniform", "_value": [1e-6, 1e-2]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve(raw)


def test_nni_types_map_onto_optuna_ranges():
    raw = copy.deepcopy(BASE)
    raw["search"]["space"] = {
        "batch_size": {"_type": "randint", "_value": [16, 65]},
        "lr": {"_type": "quniform", "_value": [0.001, 0.01, 0.001]},
        "channels": {"_type": "choice", "_value": [8, 16]},
    }
    with pytest.warns(UserWarning):
        space = resolve(raw).search.space
    assert (space["batch_size"].type, space["batch_size"].low, space["batch_size"].high) == ("int", 16, 64)
    assert space["lr"].step == 0.001
    assert space["channels"].values == (8, 16)


def test_read_yaml_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="--config: file not found"):
        read_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line \d+"):
        read_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of config keys"):
        read_yaml(listing)


def test_resolved_config_is_frozen_and_flattens_for_mlflow():
    config = load_config()
    with pytest.raises(ValidationError):
        config.seed = 1  # type: ignore[misc]
    flat = config.flat_params()
    assert flat["lr"] == "0.001" and flat["data.split.valid"] == "0.15"
    assert "search.space" not in " ".join(flat)


def test_cli_reports_config_error_as_one_line_exit_2(tmp_path: Path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("name: x\ndata: {dataset: demo_ecg}\nsolver: {name: ecg_cnn1d}\nsearch: {num_samples: -1}\n")
    code = main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == ["trial: error: search.num_samples: must be greater than or equal to 1, got -1 (int)"]
    assert not (tmp_path / "mlflow.db").exists()


def test_solver_must_fit_the_datasets_kind():
    raw = copy.deepcopy(BASE)
    raw["data"]["dataset"] = "digits"
    with pytest.raises(ConfigError, match=r"^solver.name: 'ecg_cnn1d' trains on signal data but dataset 'digits' is image data; solvers for it: image_cnn$"):
        resolve(raw)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"type": "uniform", "low": 1, "high": 20}, r"search.space.epochs: the value 1.0 would be refused \(solver.params.epochs"),
        ({"type": "int", "low": 0, "high": 5}, r"search.space.epochs: the value 0 would be refused \(solver.params.epochs"),
        ({"type": "choice", "values": [2, "three"]}, r"search.space.epochs: the value 'three' would be refused"),
    ],
)
def test_searched_values_the_solver_refuses_fail_before_any_trial(spec, expected):
    raw = copy.deepcopy(BASE)
    raw["search"]["space"] = {"epochs": spec}
    with pytest.raises(ConfigError, match=expected):
        resolve(raw)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sample_config_resolves_and_searches_one_or_two_params(path):
    config = load_config(path)
    assert 1 <= len(config.search.space) <= 2


def test_an_empty_search_space_is_an_error():
    raw = copy.deepcopy(BASE)
    raw["search"]["space"] = {}
    with pytest.raises(ConfigError, match=r"^search.space: nothing to search; name one or two solver params"):
        resolve(raw)


def test_credentials_in_the_tracking_uri_are_never_logged():
    raw = copy.deepcopy(BASE)
    raw["tracking"] = {"uri": "https://alice:s3cret@mlflow.example.org:8443/"}
    config = resolve(raw)
    assert config.tracking_uri == "https://alice:s3cret@mlflow.example.org:8443/"  # still used to connect
    assert config.flat_params()["tracking.uri"] == "https://***@mlflow.example.org:8443/"
    assert "s3cret" not in config.to_yaml() and "alice" not in config.to_yaml()
