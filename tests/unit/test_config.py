"""Every config mistake is one ConfigError naming its key; good configs resolve fully."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from pydantic import ValidationError

from trial import plugins
from trial.plugins import load_solver

from trial.cli import main
from trial.config import (
    DataConfig,
    Distribution,
    HoldoutSplit,
    KFoldSplit,
    SchedulerConfig,
    SweepConfig,
    max_epochs,
    _describe,
    _model_at,
    apply_overrides,
    load_config,
    read_yaml,
    resolve,
)
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
    assert config.solver.params.epochs == 8 and config.solver.params.dropout == 0.2
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
        ("solver.name", "resnet", "solver.name: unknown solver 'resnet'; known: ecg_cnn1d, image_cnn, tabular_mlp; or name your own as 'module.path:Name'"),
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
        ("search.space.augment", {"type": "choice", "values": [1, "noise"]}, "search.space.augment: the value 1 would be refused (solver.params.augment: must be a valid tuple, got 1 (int))"),
        ("search.space.augment", {"type": "choice", "values": ["noise", "mine:nothing"]}, "solver.params.augment: no module 'mine' (from 'mine:nothing') in the working directory "),
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
    assert config.solver.params.epochs == 3 and config.search.num_samples == 4
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


# -- edges the checks above leave open (each case found by mutation testing) ------------


def _resolved(**changes) -> SweepConfig:
    raw = copy.deepcopy(BASE)
    for path, value in changes.items():
        _set(raw, path.replace("__", "."), value)
    return resolve(raw)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"type": "uniform", "low": 0.5, "high": 0.5}, "search.space.lr: low must be < high, got low=0.5, high=0.5"),
        ({"type": "uniform", "low": 0.1, "high": float("inf")}, "search.space.lr: low and high must be finite numbers"),
        ({"type": "uniform", "low": float("-inf"), "high": 0.1}, "search.space.lr: low and high must be finite numbers"),
        ({"type": "uniform", "low": 0.0, "high": 0.5, "log": True}, "search.space.lr: a log scale needs low > 0, got low=0.0"),
        ({"type": "loguniform", "low": -1.0, "high": 0.5}, "search.space.lr: a log scale needs low > 0, got low=-1.0"),
        ({"type": "int", "low": 1, "high": 4.5}, "search.space.lr: int bounds must be whole numbers, got low=1.0, high=4.5"),
        ({"type": "uniform", "high": 0.5}, "search.space.lr: uniform needs `low` and `high`"),
        ({"type": "uniform", "low": 0.1, "high": 0.5, "step": 0}, "search.space.lr.step: must be greater than 0, got 0 (int)"),
        ({"type": "uniform", "low": [0.1], "high": 0.5}, "search.space.lr.low: must be a valid number, got [0.1] (list)"),
        ({"type": "choice", "values": [1, {"a": 1}]}, "search.space.lr: choice values must be numbers, text, true/false or null, got {'a': 1}"),
    ],
)
def test_distribution_edges_are_refused_with_their_message(spec, expected):
    with pytest.raises(ConfigError) as error:
        resolve(with_change("search.space.lr", spec))
    assert str(error.value) == expected


def test_distributions_map_onto_the_optuna_distributions_of_their_range():
    optuna_ = optuna.distributions
    cases = [
        ({"type": "int", "low": 1, "high": 9}, optuna_.IntDistribution(1, 9, log=False, step=1), [1, 9], False),
        ({"type": "int", "low": 0, "high": 8, "step": 2}, optuna_.IntDistribution(0, 8, log=False, step=2), [0, 8], False),
        ({"type": "int", "low": 1, "high": 8, "log": True}, optuna_.IntDistribution(1, 8, log=True, step=1), [1, 8], True),
        ({"type": "uniform", "low": 0.1, "high": 0.5}, optuna_.FloatDistribution(0.1, 0.5, log=False), [0.1, 0.5], False),
        ({"type": "uniform", "low": 0, "high": 1, "step": 0.25}, optuna_.FloatDistribution(0, 1, step=0.25), [0.0, 1.0], False),
        ({"type": "loguniform", "low": 1e-4, "high": 1e-2}, optuna_.FloatDistribution(1e-4, 1e-2, log=True), [1e-4, 1e-2], True),
        ({"type": "uniform", "low": 1e-4, "high": 1e-2, "log": True}, optuna_.FloatDistribution(1e-4, 1e-2, log=True), [1e-4, 1e-2], True),
        ({"type": "choice", "values": ["a", None, True, 2, 0.5]}, optuna_.CategoricalDistribution(["a", None, True, 2, 0.5]), ["a", None, True, 2, 0.5], False),
    ]
    for spec, distribution, extremes, is_log in cases:
        parsed = Distribution.model_validate(spec)
        assert parsed.to_optuna() == distribution, spec
        assert parsed.extremes == extremes and [type(v) for v in parsed.extremes] == [type(v) for v in extremes], spec
        assert parsed.is_log is is_log, spec


@pytest.mark.parametrize(
    "split, expected",
    [
        ({"folds": 3}, KFoldSplit(folds=3, fold=0, test=0.15)),
        ({"folds": 4, "fold": 3, "test": 0.2}, KFoldSplit(folds=4, fold=3, test=0.2)),
        ({}, HoldoutSplit(valid=0.15, test=0.15)),
        ({"valid": 0.5, "test": 0.49}, HoldoutSplit(valid=0.5, test=0.49)),
    ],
)
def test_the_split_s_keys_choose_its_kind(split, expected):
    assert _resolved(data__split=split).data.split == expected


@pytest.mark.parametrize(
    "split, expected",
    [
        ({"fold": 1}, "data.split.folds: required key is missing"),
        ({"valid": 0.5, "test": 0.5}, "data.split: valid + test must be < 1, got 0.5 + 0.5"),
        ({"folds": 3, "fold": 3}, "data.split: fold=3 must be < folds=3"),
        ({"valid": 0.1, "extra": 1}, "data.split.extra: unknown key; allowed here: valid, test (hold-out) or folds, fold, test (k-fold)"),
    ],
)
def test_split_mistakes(split, expected):
    with pytest.raises(ConfigError) as error:
        _resolved(data__split=split)
    assert str(error.value) == expected


@pytest.mark.parametrize("name, ok", [(".", False), ("a\\b", False), ("a\0b", False), ("a/b", False), ("a.b", True), ("..x", True)])
def test_sweep_names_must_be_one_folder_name(name, ok):
    if ok:
        assert _resolved(name=name).name == name
    else:
        with pytest.raises(ConfigError) as error:
            _resolved(name=name)
        assert str(error.value) == f"name: {name!r} names the sweep's folder in Tune's storage; use no '/', '\\' or '..'"


def test_tracking_storage_and_optuna_default_beside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = _resolved()
    assert config.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert config.storage_path == tmp_path / "trial_runs"
    assert config.optuna_storage_url == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert config.experiment_name == "t" and config.metric_mode == "max"


def test_mlflow_s_environment_uri_is_used_and_storage_then_stays_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    config = _resolved()
    assert config.tracking_uri == "http://mlflow:5000"
    assert config.storage_path == tmp_path / "trial_runs"
    assert config.optuna_storage_url == f"sqlite:///{tmp_path / 'trial_runs' / 'optuna.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # empty: unset
    assert _resolved().tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_configured_uri_storage_and_experiment_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ignored:5000")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    store = tmp_path / "stores" / "m.db"
    config = _resolved(tracking={"uri": f"sqlite:///{store}", "experiment": "exp"})
    assert config.tracking_uri == f"sqlite:///{store}" and config.experiment_name == "exp"
    assert config.storage_path == tmp_path / "stores" / "trial_runs"
    assert config.optuna_storage_url == f"sqlite:///{tmp_path / 'stores' / 'optuna.db'}"
    assert _resolved(storage="~/runs").storage_path == tmp_path / "home" / "runs"
    assert _resolved(storage="rel/../runs").storage_path == tmp_path / "runs"
    remote = _resolved(tracking={"uri": "http://mlflow:5000"}, storage="runs")
    assert remote.optuna_storage_url == f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}"


@pytest.mark.parametrize("metric, mode, expected", [("valid/loss", None, "min"), ("valid/auroc", None, "max"), ("valid/loss", "max", "max")])
def test_metric_mode_is_the_metric_s_direction_unless_set(metric, mode, expected):
    assert _resolved(search__metric=metric, search__mode=mode).metric_mode == expected


@pytest.mark.parametrize("metric", ["train/loss", "valid/", "loss", "valid/loss/x"])
def test_only_reported_valid_metrics_can_be_optimised(metric):
    with pytest.raises(ConfigError, match=rf"^search.metric: '{metric}' is never reported; reported: valid/loss, "):
        _resolved(search__metric=metric)


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("https://alice@host/", "https://***@host/"),
        ("https://:pw@host/", "https://***@host/"),
        ("https://alice:pw@host:8443/p?q=1", "https://***@host:8443/p?q=1"),
        ("http://host:5000/", "http://host:5000/"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        # A database over a local socket has no host: only the credentials go.
        ("postgresql://user:pw@/mlflow?host=/run/pg", "postgresql://***@/mlflow?host=/run/pg"),
    ],
)
def test_logged_tracking_uri_masks_any_user_or_password(uri, shown):
    config = _resolved(tracking={"uri": uri})
    assert config.to_dict()["tracking"]["uri"] == shown
    assert config.flat_params()["tracking.uri"] == shown
    assert config.tracking_uri == uri


def test_resolved_config_as_yaml_and_mlflow_params():
    config = _resolved()
    data = yaml.safe_load(config.to_yaml())
    assert data == config.to_dict()
    assert list(data) == ["name", "seed", "data", "solver", "search", "scaling", "tracking", "debug", "storage"]
    assert data["data"]["stratify"] == ["label", "hos"] and data["search"]["space"]["lr"]["type"] == "loguniform"
    flat = config.flat_params()
    # Every value as the text MLflow shows: YAML's flow style, no document end marker.
    assert (flat["seed"], flat["data.stratify"], flat["data.dataset_params"]) == ("42", "[label, hos]", "{}")
    assert (flat["tracking.experiment"], flat["debug"], flat["data.split.valid"], flat["name"]) == ("null", "false", "0.15", "t")
    # Solver params under their own names; the searched space is not a trial's value.
    assert (flat["lr"], flat["epochs"], flat["augment"]) == ("0.001", "8", "[]")
    assert not [key for key in flat if key.startswith(("solver.params", "search.space"))]
    assert flat["solver.name"] == "ecg_cnn1d" and flat["search.metric"] == "valid/auroc"
    # flat_params leaves the config itself whole.
    assert config.to_dict()["solver"]["params"]["lr"] == 0.001 and "lr" in config.to_dict()["search"]["space"]


def test_labels_csv_data_stratifies_on_its_target_by_default():
    config = _resolved(data={"labels": "labels.csv", "target": "y"})
    assert config.data.stratify == ("y",)
    assert _resolved(data={"labels": "labels.csv", "stratify": ["site"]}).data.stratify == ("site",)


def test_debug_shrinks_the_sweep_and_names_it_apart():
    config = _resolved(debug=True)
    assert (config.name, config.experiment_name, config.tracking.experiment) == ("t-debug", "t", "t")
    assert (config.data.subsample, config.solver.params.epochs, config.search.num_samples) == (0.05, 2, 2)
    small = _resolved(debug=True, data__subsample=0.5, solver__params={"epochs": 1}, search__num_samples=1,
                      tracking={"experiment": "exp"})
    assert (small.data.subsample, small.solver.params.epochs, small.search.num_samples) == (0.5, 1, 1)
    assert (small.name, small.experiment_name) == ("t-debug", "exp")
    full = _resolved()
    assert (full.name, full.data.subsample, full.solver.params.epochs, full.search.num_samples) == ("t", None, 8, 8)


@pytest.mark.parametrize(
    ("epochs_spec", "debug_spec"),
    [
        ({"type": "int", "low": 1, "high": 12}, {"type": "int", "low": 1.0, "high": 2.0}),
        ({"type": "int", "low": 4, "high": 12}, {"type": "choice", "values": (2,)}),
        ({"type": "choice", "values": [1, 3, 10]}, {"type": "choice", "values": (1, 2)}),
    ],
)
def test_a_searched_epochs_count_sets_ashas_horizon_and_debug_caps_it(epochs_spec, debug_spec):
    from trial.ray_backend import build_scheduler

    space = {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}, "epochs": epochs_spec}
    scheduler = {"type": "asha", "grace_period": 1}
    full = _resolved(search__space=space, search__scheduler=scheduler)
    top = max(epochs_spec.get("values") or [epochs_spec["high"]])
    assert max_epochs(full.search, full.solver.params.epochs) == top
    assert build_scheduler(full, set())._max_t == top  # not the base params' 8
    debug = _resolved(debug=True, search__space=space, search__scheduler=scheduler)
    assert debug.search.space["epochs"].model_dump(include={"type", "low", "high", "values"}, exclude_none=True) == debug_spec
    assert build_scheduler(debug, set())._max_t == 2


@pytest.mark.parametrize(
    "scheduler, space_epochs, grace, warns",
    [
        ({"type": "asha", "grace_period": 10}, None, 8, True),  # solver.params.epochs is 8
        ({"type": "asha", "grace_period": 8}, None, 8, False),
        ({"type": "asha", "grace_period": 15}, {"type": "int", "low": 2, "high": 20}, 15, False),
        ({"type": "asha", "grace_period": 15}, {"type": "choice", "values": [3, 12]}, 12, True),
        ({"type": "none", "grace_period": 10}, None, 10, False),
    ],
)
def test_asha_s_grace_period_is_lowered_to_the_longest_trial(scheduler, space_epochs, grace, warns):
    raw = copy.deepcopy(BASE)
    raw["search"]["scheduler"] = scheduler
    if space_epochs:
        raw["search"]["space"]["epochs"] = space_epochs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = resolve(raw)
    assert config.search.scheduler.grace_period == grace
    lowered = [str(w.message) for w in caught if "grace_period" in str(w.message)]
    assert lowered == ([f"search.scheduler.grace_period={scheduler['grace_period']} lowered to {grace}: trials run at most "
                        f"{grace} epochs (solver.params.epochs), and ASHA cannot wait longer than that before pruning"]
                       if warns else [])


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"_type": "choice"}, "search.space.lr._value: required in an NNI-style entry"),
        ({"_value": [1, 2]}, "search.space.lr._type: required in an NNI-style entry"),
    ],
)
def test_any_nni_key_makes_an_entry_nni_style(spec, expected):
    with pytest.raises(ConfigError) as error:
        resolve(with_change("search.space.lr", spec))
    assert str(error.value) == expected


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("search.scheduler.grace", 1, "search.scheduler.grace: unknown key; allowed here: type, grace_period, reduction_factor"),
        ("tracking.url", "x", "tracking.url: unknown key; allowed here: uri, experiment, register_as"),
        ("search.space.lr.low", "1e-4", "search.space.lr.low: expected a number, got the text '1e-4' (YAML reads 1e-3 as text: write 1.0e-3)"),
        ("search.algo", "grid", "search.algo: must be 'tpe' or 'random', got 'grid'"),
        ("seed", 2**32, "seed: must be less than 4294967296, got 4294967296 (int)"),
    ],
)
def test_validation_messages_in_full(path, value, expected):
    raw = _set(copy.deepcopy(BASE), path, value)
    with pytest.raises(ConfigError) as error:
        resolve(raw)
    assert str(error.value) == expected


def test_read_yaml_reports_line_and_column_and_reads_an_empty_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("a: b: c\n")  # the second ':' is line 1, column 5
    with pytest.raises(ConfigError) as error:
        read_yaml(path)
    assert str(error.value) == f"{path}: invalid YAML at line 1, column 5: mapping values are not allowed here"
    path.write_text("")
    assert read_yaml(path) == {}
    path.write_text("3\n")
    with pytest.raises(ConfigError) as error:
        read_yaml(path)
    assert str(error.value) == f"{path}: expected a mapping of config keys at the top level, got int"


def test_overrides_build_missing_sections_and_keep_everything_after_the_first_equals():
    raw = apply_overrides({"data": None, "seed": 1}, ["data.dataset=demo_ecg", "a.b.c=1", "name=x=y", "seed=null"])
    assert raw == {"data": {"dataset": "demo_ecg"}, "seed": None, "a": {"b": {"c": 1}}, "name": "x=y"}
    with pytest.raises(ConfigError) as error:
        apply_overrides({"a": {"b": 5}}, ["a.b.c.d=1"])
    assert str(error.value) == "--set a.b.c.d: a.b is a value (5), not a section"
    for bad in ("=1", "a.=1", ".a=1"):
        with pytest.raises(ConfigError) as error:
            apply_overrides({}, [bad])
        assert str(error.value) == f"--set {bad!r}: expected KEY.PATH=VALUE, e.g. solver.params.epochs=3"


def test_load_config_names_the_sweep_after_its_file_unless_named(tmp_path: Path):
    path = tmp_path / "my-sweep.yaml"
    raw = copy.deepcopy(BASE)
    del raw["name"]
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).name == "my-sweep"
    assert load_config(path, ["name=other", "seed=7"]).name == "other"
    assert load_config(path, ["seed=7"]).seed == 7


def test_model_at_finds_the_section_a_key_path_leads_to():
    assert _model_at([]) is SweepConfig
    assert _model_at(["search", "scheduler"]) is SchedulerConfig
    assert _model_at(["search", "space", "lr"]) is Distribution  # the user's own key is skipped
    assert _model_at(["search", "space"]) is Distribution
    assert _model_at(["data", "split"]) is HoldoutSplit  # the first section inside the tagged union
    assert _model_at(["seed"]) is None  # a value, not a section
    assert _model_at(["seed", "x"]) is None
    assert _model_at(["nope"]) is None


@pytest.mark.parametrize(
    "error, expected",
    [
        # No config mistake gives these today; the messages still name the place.
        ({"loc": (), "type": "missing", "msg": "Field required"}, "config: required key is missing"),
        ({"loc": ("seed", "x"), "type": "extra_forbidden", "msg": "Extra inputs are not permitted", "input": 1},
         "seed.x: unknown key; allowed here: nothing"),
        ({"loc": ("data", "split"), "type": "union_tag_invalid", "input": {"k": 1},
          "msg": "Input tag 'x' found using _split_kind() does not match any of the expected tags: 'holdout', 'kfold'"},
         "data.split: Input tag 'x' found using _split_kind() does not match any of the expected tags: 'holdout', 'kfold', got {'k': 1}"),
    ],
)
def test_describe_fallbacks(error, expected):
    assert _describe(error) == expected


def test_mlflow_params_keep_text_as_written_and_nested_values_on_one_line():
    config = _resolved(tracking={"experiment": "2024"}, data__dataset_params={"X": [[1, 2], [3]], "n": {}})
    flat = config.flat_params()
    assert flat["tracking.experiment"] == "2024"  # text stays text: not YAML's quoted '2024'
    assert flat["data.dataset_params.X"] == "[[1, 2], [3]]"  # every key keeps its own name
    assert flat["data.dataset_params.n"] == "{}"


def test_a_split_given_as_a_section_object_keeps_its_kind():
    assert DataConfig(dataset="demo_ecg", split=KFoldSplit(folds=3)).split == KFoldSplit(folds=3)
    assert DataConfig(dataset="demo_ecg", split=HoldoutSplit(valid=0.2)).split == HoldoutSplit(valid=0.2, test=0.15)


@pytest.mark.parametrize(
    "text, expected",
    [
        # The problem, not PyYAML's context line ("while parsing a flow sequence") above it.
        ("name: [unclosed\n", "invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
        # A reader error has no position mark: its first line alone.
        ("a: 1\n\x07\n", "invalid YAML: unacceptable character #x0007: special characters are not allowed"),
    ],
)
def test_read_yaml_names_the_problem(tmp_path: Path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        read_yaml(path)
    assert str(error.value) == f"{path}: {expected}"


def test_space_mistakes_in_full():
    with pytest.raises(ConfigError) as error:
        _resolved(search__space={})
    assert str(error.value) == (
        "search.space: nothing to search; name one or two solver params, e.g. lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}"
    )
    with pytest.raises(ConfigError) as error:
        _resolved(search__space={"beta3": {"type": "uniform", "low": 0.1, "high": 0.2}})
    known = load_solver("ecg_cnn1d").param_names()
    assert len(known) > 1
    assert str(error.value) == f"search.space.beta3: not a param of solver 'ecg_cnn1d'; its params: {', '.join(known)}"
    space = {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}, "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
             "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-2}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _resolved(search__space=space)
    assert [str(w.message) for w in caught] == [
        "search.space searches 3 params; searching one or two and fixing the rest usually finds more in the same budget"
    ]


def test_a_solver_for_another_kind_of_data_lists_every_solver_for_the_dataset(monkeypatch):
    monkeypatch.setitem(plugins.BUILTIN_SOLVERS, "image_cnn_copy", plugins.BUILTIN_SOLVERS["image_cnn"])
    with pytest.raises(ConfigError) as error:
        _resolved(data__dataset="digits")
    assert str(error.value) == (
        "solver.name: 'ecg_cnn1d' trains on signal data but dataset 'digits' is image data; "
        "solvers for it: image_cnn, image_cnn_copy"
    )
