"""NNI search spaces and experiment configs convert into sweep configs that load."""
from __future__ import annotations

import json
import warnings

import pytest
import yaml

from trial.config import load_config
from trial.errors import ConfigError
from trial.nni import convert_experiment, import_nni, nni_distribution


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"_type": "choice", "_value": [16, 32]}, {"type": "choice", "values": [16, 32]}),
        ({"_type": "randint", "_value": [2, 10]}, {"type": "int", "low": 2, "high": 9}),
        ({"_type": "uniform", "_value": [0.1, 0.5]}, {"type": "uniform", "low": 0.1, "high": 0.5}),
        ({"_type": "quniform", "_value": [0, 1, 0.25]}, {"type": "uniform", "low": 0, "high": 1, "step": 0.25}),
        ({"_type": "loguniform", "_value": [1e-4, 1e-2]}, {"type": "loguniform", "low": 1e-4, "high": 1e-2}),
        ({"_type": "qloguniform", "_value": [8, 256, 1]}, {"type": "int", "low": 8, "high": 256, "log": True}),
    ],
)
def test_exact_types_map_without_warning(spec, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nni_distribution("x", spec) == expected


@pytest.mark.parametrize(
    "spec, expected, warning",
    [
        ({"_type": "normal", "_value": [0.5, 0.1]}, {"type": "uniform", "low": 0.2, "high": 0.8}, r"x: normal\(0.5, 0.1\) became uniform over \[0.2, 0.8\]"),
        ({"_type": "qnormal", "_value": [10, 2, 1]}, {"type": "uniform", "low": 4, "high": 16, "step": 1}, r"x: qnormal"),
        ({"_type": "qloguniform", "_value": [1e-4, 1e-2, 1e-4]}, {"type": "loguniform", "low": 1e-4, "high": 1e-2}, r"x: qloguniform step q=0.0001 dropped"),
    ],
)
def test_approximations_warn_naming_the_change(spec, expected, warning):
    with pytest.warns(UserWarning, match=warning):
        result = nni_distribution("x", spec)
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"_type": "lognormal", "_value": [0, 1]}, r"x._type: 'lognormal' has no Optuna counterpart"),
        ({"_type": "qlognormal", "_value": [0, 1, 1]}, r"x._type: 'qlognormal' has no Optuna counterpart"),
        ({"_type": "uniform", "_value": "0,1"}, r"x._value: expected a list"),
        ({"_type": "quniform", "_value": [0, 1]}, r"x._value: quniform expects 3 numbers"),
        ({"_type": "choice", "_value": [1], "extra": 1}, r"x.extra: unknown key"),
    ],
)
def test_unsupported_or_malformed_entries_name_the_type(spec, message):
    with pytest.raises(ConfigError, match=message):
        nni_distribution("x", spec)


def test_experiment_settings_map_onto_search():
    experiment = {
        "trialConcurrency": 3,
        "maxTrialNumber": 12,
        "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "maximize"}},
        "trialCommand": "python train.py",
    }
    config = convert_experiment(
        {"lr": {"_type": "loguniform", "_value": [1e-4, 1e-2]}}, experiment,
        name="x", solver="ecg_cnn1d", dataset="demo_ecg", metric="valid/auroc",
    )
    search = config["search"]
    assert (search["max_concurrent"], search["num_samples"], search["algo"], search["mode"]) == (3, 12, "tpe", "max")


def test_v1_experiment_keys_and_unknown_tuners():
    with pytest.warns(UserWarning, match="tuner.name: NNI tuner 'SMAC' has no counterpart"):
        config = convert_experiment(
            {"lr": {"_type": "uniform", "_value": [0.001, 0.01]}},
            {"maxTrialNum": 5, "tuner": {"builtinTunerName": "SMAC"}},
            name="x", solver="ecg_cnn1d", dataset="demo_ecg", metric="valid/auroc",
        )
    assert config["search"]["num_samples"] == 5 and config["search"]["algo"] == "tpe"


def test_import_writes_a_config_that_loads(tmp_path):
    (tmp_path / "search_space.json").write_text(json.dumps({
        "lr": {"_type": "loguniform", "_value": [0.0001, 0.01]},
        "batch_size": {"_type": "choice", "_value": [32, 64]},
    }))
    (tmp_path / "config.yml").write_text(yaml.safe_dump({"trialConcurrency": 2, "maxTrialNumber": 6, "tuner": {"name": "Random"}}))
    out = import_nni(tmp_path / "search_space.json", tmp_path / "config.yml", tmp_path / "from_nni.yaml",
                     solver="ecg_cnn1d", dataset="demo_ecg", metric="valid/auroc")
    config = load_config(out)
    assert config.name == "from_nni" and config.search.algo == "random" and config.search.num_samples == 6
    assert config.search.space["batch_size"].values == (32, 64)


def test_import_of_a_space_the_solver_cannot_take_writes_nothing(tmp_path):
    (tmp_path / "search_space.json").write_text(json.dumps({"momentum_beta": {"_type": "uniform", "_value": [0.1, 0.9]}}))
    with pytest.raises(ConfigError, match="search.space.momentum_beta: not a param of solver 'ecg_cnn1d'"):
        import_nni(tmp_path / "search_space.json", None, tmp_path / "out.yaml", solver="ecg_cnn1d", dataset="demo_ecg", metric="valid/auroc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search_space.json"]


def test_cli_import_nni_writes_the_yaml_and_errors_in_one_line(tmp_path, capsys):
    from trial.cli import main

    (tmp_path / "search_space.json").write_text(json.dumps({"lr": {"_type": "normal", "_value": [0.005, 0.001]}}))
    out = tmp_path / "mine.yaml"
    assert main(["import-nni", str(tmp_path / "search_space.json"), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "trial: warning: search_space.lr: normal(0.005, 0.001) became uniform" in captured.err
    assert load_config(out).search.space["lr"].low == pytest.approx(0.002)

    (tmp_path / "bad.json").write_text(json.dumps({"lr": {"_type": "lognormal", "_value": [0, 1]}}))
    assert main(["import-nni", str(tmp_path / "bad.json"), "-o", str(tmp_path / "bad.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "trial: error: search_space.lr._type: 'lognormal' has no Optuna counterpart; supported: "
        "choice, randint, uniform, quniform, loguniform, qloguniform, normal, qnormal"
    ]
    assert not (tmp_path / "bad.yaml").exists()
