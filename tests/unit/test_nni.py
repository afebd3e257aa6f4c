"""NNI search spaces and experiment configs convert into sweep configs that load.

Real NNI files (tests/fixtures/nni/<tag>/<NNI's own path>, see its README) check the
importer against what NNI's examples and tests actually hold.
"""
from __future__ import annotations

import json
import re
import shutil
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from trial.cli import main
from trial.config import Distribution, load_config
from trial.errors import ConfigError
from trial.nni import convert_experiment, import_nni, nni_distribution, read_nni

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nni"
NNI_FILES = sorted(p for p in FIXTURES.rglob("*") if p.suffix in (".json", ".yml", ".yaml"))
ARGS = {"solver": "ecg_cnn1d", "dataset": "demo_ecg", "metric": "valid/auroc"}


def _no_warnings(call: Any, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call(*args)


def _drawn(spec: dict[str, Any]) -> list[Any]:
    """Every value a mapped distribution can give, in order (decimal steps, as Optuna's grid)."""
    if spec["type"] == "choice":
        return list(spec["values"])
    step = Decimal(repr(spec.get("step", 1)))
    low, high = Decimal(repr(spec["low"])), Decimal(repr(spec["high"]))
    count = int((high - low) / step) + 1
    values = [low + k * step for k in range(count)]
    return [int(v) if spec["type"] == "int" else float(v) for v in values]


def _nni_draws(low: float, high: float, q: float, *, log: bool) -> set[float]:
    """What NNI draws for q(log)uniform: clip(round(x / q) * q, low, high), x over a fine
    grid strictly inside [low, high] (uniform, or uniform in log x)."""
    inner = np.linspace(0, 1, 200_003)[1:-1]
    xs = np.exp(np.log(low) + inner * (np.log(high) - np.log(low))) if log else low + inner * (high - low)
    return set(np.round(np.clip(np.round(xs / q) * q, low, high), 9).tolist())


# -- one entry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"_type": "choice", "_value": [16, 32]}, {"type": "choice", "values": [16, 32]}),
        ({"_type": "choice", "_value": [1]}, {"type": "choice", "values": [1]}),
        ({"_type": "randint", "_value": [2, 10]}, {"type": "int", "low": 2, "high": 9}),
        ({"_type": "uniform", "_value": [0.1, 0.5]}, {"type": "uniform", "low": 0.1, "high": 0.5}),
        ({"_type": "quniform", "_value": [0, 1, 0.25]}, {"type": "uniform", "low": 0, "high": 1, "step": 0.25}),
        ({"_type": "quniform", "_value": [2, 16, 1]}, {"type": "int", "low": 2, "high": 16}),
        (  # rocksdb-fillrandom's write_buffer_size: an int param, stepped
            {"_type": "quniform", "_value": [2097152, 16777216, 1048576]},
            {"type": "int", "low": 2097152, "high": 16777216, "step": 1048576},
        ),
        ({"_type": "quniform", "_value": [2.0, 10.0, 5.0]}, {"type": "choice", "values": [2, 5, 10]}),
        ({"_type": "loguniform", "_value": [1e-4, 1e-2]}, {"type": "loguniform", "low": 1e-4, "high": 1e-2}),
        ({"_type": "qloguniform", "_value": [8, 256, 1]}, {"type": "int", "low": 8, "high": 256, "log": True}),
    ],
)
def test_exact_types_map_without_warning(spec, expected):
    assert _no_warnings(nni_distribution, "x", spec) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ([2, 10, 5], [2, 5, 10]),  # NNI's documented example; 2 and 10 are the clipped ends
        ([0.0, 10.0, 2.5], [0, 2.5, 5, 7.5, 10]),
        ([-5.5, -0.5, 6], [-5.5, -0.5]),  # NNI's test asset quniform_clip_2: only the two clipped ends
        ([0.4, 1.0, 0.5], [0.5, 1.0]),  # x in [0.4, 0.5) rounds up: 0.4 itself is never drawn
        ([0.1, 0.5, 0.1], [0.1, 0.2, 0.3, 0.4, 0.5]),
        ([0.5, 5000.5, 1], list(range(1, 5001))),
        ([0.05, 1.0, 0.3], [0.05, 0.3, 0.6, 0.9]),  # x in (0.9, 1.0] rounds down to 0.9: 1.0 is never drawn
    ],
)
def test_quniform_keeps_exactly_the_values_nni_draws(value, expected):
    spec = _no_warnings(nni_distribution, "x", {"_type": "quniform", "_value": value})
    drawn = _drawn(spec)
    assert drawn == expected
    assert {round(v, 9) for v in drawn} == _nni_draws(*value, log=False)
    # ints where every value is whole (an int solver param takes them), floats otherwise
    assert all(isinstance(v, int) for v in drawn) == all(float(v).is_integer() for v in expected)
    Distribution.model_validate(spec)


@pytest.mark.parametrize("value", [[0.001, 100, 1], [1e-4, 1e-2, 1e-4], [0.3, 50, 0.5], [8, 1024, 8]])
def test_qloguniform_keeps_the_values_and_says_the_log_weighting_is_lost(value):
    with pytest.warns(UserWarning, match=r"x: qloguniform .* the same values, without the log scale's weighting"):
        spec = nni_distribution("x", {"_type": "qloguniform", "_value": value})
    assert {round(v, 9) for v in _drawn(spec)} == _nni_draws(*value, log=True)
    Distribution.model_validate(spec)


@pytest.mark.parametrize(
    "spec, fixed",
    [
        ({"_type": "uniform", "_value": [99.9, 99.9]}, 99.9),  # NNI's test asset uniform_equal
        ({"_type": "loguniform", "_value": [1, 1]}, 1),
        ({"_type": "randint", "_value": [10, 11]}, 10),  # high is exclusive
        ({"_type": "qloguniform", "_value": [2, 2, 1]}, 2),
        ({"_type": "quniform", "_value": [0.5, 0.9, 2]}, 0.5),  # round(x / 2) is 0 for all x, clipped up to 0.5
        ({"_type": "qnormal", "_value": [10, 0.01, 5]}, 10),
    ],
)
def test_ranges_nni_collapses_to_one_value_import_as_that_value(spec, fixed):
    with pytest.warns(UserWarning, match=rf"x: {spec['_type']} .* only ever draws {fixed!r}; imported as that fixed value"):
        result = nni_distribution("x", spec)
    assert result == {"type": "choice", "values": [fixed]}
    Distribution.model_validate(result)


@pytest.mark.parametrize(
    "spec, expected, warning",
    [
        (
            {"_type": "normal", "_value": [0.5, 0.1]},
            {"type": "uniform", "low": 0.2, "high": 0.8},
            r"x: normal\(0.5, 0.1\) became uniform over \[0.2, 0.8\]",
        ),
        (  # NNI's qnormal draws multiples of q: the range's ends too
            {"_type": "qnormal", "_value": [0.5, 0.1, 0.25]},
            {"type": "uniform", "low": 0.25, "high": 0.75, "step": 0.25},
            r"x: qnormal\(0.5, 0.1, 0.25\) became uniform over \[0.25, 0.75\] step 0.25",
        ),
        ({"_type": "qnormal", "_value": [10, 2, 1]}, {"type": "int", "low": 4, "high": 16}, r"x: qnormal"),
    ],
)
def test_normal_and_qnormal_become_a_bounded_range_with_a_warning(spec, expected, warning):
    with pytest.warns(UserWarning, match=warning):
        result = nni_distribution("x", spec)
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value)
    Distribution.model_validate(result)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("To demonstrate the flexibility", r"^x: expected an NNI \{_type, _value\} entry, got the str 'To demonstrate"),
        ([1, 100], r"^x: expected an NNI \{_type, _value\} entry, got the list \[1, 100\]"),
        (1, r"^x: expected an NNI \{_type, _value\} entry, got the int 1"),
        ({"_type": "choice"}, r"^x._value: required"),
        (
            {"_type": "choice", "_value": [{"_name": "Empty"}, {"_name": "Conv", "k": {"_type": "choice", "_value": [1, 3]}}]},
            r"^x: NNI's nested choice \(entries with _name\) has no counterpart here",
        ),
        ({"_type": "mutable_layer", "_value": {}}, r"^x._type: 'mutable_layer' has no Optuna counterpart"),
        ({"_type": "lognormal", "_value": [0, 1]}, r"^x._type: 'lognormal' has no Optuna counterpart"),
        ({"_type": "qlognormal", "_value": [0, 1, 1]}, r"^x._type: 'qlognormal' has no Optuna counterpart"),
        ({"_type": "uniform", "_value": "0,1"}, r"^x._value: expected a non-empty list"),
        ({"_type": "choice", "_value": []}, r"^x._value: expected a non-empty list"),
        ({"_type": "quniform", "_value": [0, 1]}, r"^x._value: quniform expects 3 numbers"),
        ({"_type": "choice", "_value": [1], "extra": 1}, r"^x.extra: unknown key"),
        ({"_type": "randint", "_value": [0, 0]}, r"^x._value: randint \[0, 0\] is empty"),  # NNI's randint_fail_equal
        ({"_type": "randint", "_value": [2.5, 6]}, r"^x._value: randint expects whole numbers"),
        ({"_type": "uniform", "_value": [1, 0]}, r"^x._value: uniform expects low <= high"),
        ({"_type": "loguniform", "_value": [0, 1]}, r"^x._value: loguniform needs low > 0"),
        ({"_type": "quniform", "_value": [0, 1, 0]}, r"^x._value: quniform needs q > 0"),
        ({"_type": "normal", "_value": [0, 0]}, r"^x._value: normal needs sigma > 0"),
        ({"_type": "qnormal", "_value": [1e308, 1e308, 1]}, r"^x._value: qnormal \[1e\+308, 1e\+308, 1\] spans beyond"),
        ({"_type": "quniform", "_value": [0.2, 5000, 1]}, r"^x._value: quniform .* gives 5001 values .* too many for a choice"),
    ],
)
def test_unsupported_or_malformed_entries_are_one_line_naming_the_key(spec, message):
    with pytest.raises(ConfigError, match=message) as raised:
        nni_distribution("x", spec)
    assert "\n" not in str(raised.value)


def test_a_sweep_config_s_inline_nni_entries_map_as_the_importer_maps_them(tmp_path):
    spec = {"_type": "quniform", "_value": [16, 64, 16]}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "data": {"dataset": "demo_ecg"},
        "solver": {"name": "ecg_cnn1d"},
        "search": {"space": {"batch_size": spec}},
    }))
    searched = load_config(tmp_path / "sweep.yaml").search.space["batch_size"]
    assert searched == Distribution.model_validate(nni_distribution("x", spec))
    assert (searched.type, searched.low, searched.high, searched.step) == ("int", 16, 64, 16)


# -- experiment configs ----------------------------------------------------------


def _converted(*paths: Path, metric: str = "valid/auroc") -> tuple[dict[str, Any], list[str]]:
    """The search section NNI's files give (space left out) and the warnings on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space, experiment, _ = read_nni(list(paths))
        config = convert_experiment(space, experiment, name="x", solver="ecg_cnn1d", dataset="demo_ecg", metric=metric)
    search = config["search"]
    search["space_keys"] = sorted(search.pop("space"))
    return search, [str(w.message) for w in caught]


def test_v1_config_reads_its_search_space_path_and_camel_case_settings():
    search, caught = _converted(FIXTURES / "v1.9/examples/trials/mnist-pytorch/config.yml")
    assert search == {
        "metric": "valid/auroc", "max_concurrent": 1, "num_samples": 10, "mode": "max", "algo": "tpe",
        "space_keys": ["batch_size", "hidden_size", "lr", "momentum"],
    }
    assert caught == []


def test_v2_camel_case_config_with_an_inline_search_space():
    search, caught = _converted(FIXTURES / "v3.0/examples/trials/mnist-pytorch/config_detailed.yml")
    assert (search["max_concurrent"], search["num_samples"], search["algo"], search["mode"]) == (4, 10, "tpe", "max")
    assert search["space_keys"] == ["batch_size", "hidden_size", "lr", "momentum"]
    assert caught == []


def test_v2_snake_case_config_settings_and_class_args_are_read():
    search, caught = _converted(FIXTURES / "v3.0/examples/tutorials/hpo_nnictl/config.yaml")
    assert search == {
        "metric": "valid/auroc", "max_concurrent": 2, "num_samples": 10, "mode": "max", "algo": "tpe",
        "space_keys": ["features", "lr", "momentum"],
    }
    assert caught == []


@pytest.mark.parametrize(
    "config, algo, warning",
    [
        (
            "v1.9/examples/trials/mnist-advisor/config_bohb.yml",  # v1 builtinAdvisorName
            "tpe",
            "advisor 'BOHB' became TPE sampling with ASHA early stopping (search.scheduler), a fair counterpart",
        ),
        (
            "v3.0/examples/trials/mnist-advisor/config_hyperband.yml",  # v2 advisor name
            "random",
            "advisor 'Hyperband' became random sampling with ASHA early stopping (search.scheduler)",
        ),
    ],
)
def test_advisors_become_asha_with_their_eta_and_optimize_mode(config, algo, warning):
    search, caught = _converted(FIXTURES / config)
    assert (search["algo"], search["mode"], search["scheduler"]) == (algo, "max", {"type": "asha", "reduction_factor": 3})
    assert len(caught) == 1 and caught[0].startswith(warning)


@pytest.mark.parametrize(
    "config, warning",
    [
        ("v3.0/examples/trials/systems_auto_tuning/rocksdb-fillrandom/config_smac.yml", "tuner 'SMAC' has no counterpart; using TPE"),
        ("v1.9/test/config/multi_thread/config.yml", "custom tuner 'MultiThreadTuner' has no counterpart; using TPE"),
    ],
)
def test_tuners_without_a_counterpart_are_named_in_a_warning(config, warning):
    search, caught = _converted(FIXTURES / config)
    assert search["algo"] == "tpe" and caught == [warning]


def test_custom_tuner_and_assessor_are_named_before_the_space_is_refused():
    config = FIXTURES / "v3.0/test/ut/experiment/assets/config.yaml"
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ConfigError, match=r"^search_space.a: expected an NNI"):
        warnings.simplefilter("always")
        space, experiment, _ = read_nni([config])
        convert_experiment(space, experiment, name="x", **ARGS)
    assert [str(w.message).split(";")[0] for w in caught] == [
        "custom tuner 'Tuner' has no counterpart", "assessor 'assess' has no counterpart",
    ]


@pytest.mark.parametrize(
    "experiment, message",
    [
        ({"trialConcurrency": "two", "maxTrialNumber": 4}, r"^trialConcurrency: expected a whole number >= 1, got 'two'"),
        ({"max_trial_number": 0}, r"^max_trial_number: expected a whole number >= 1, got 0"),
        (
            {"maxTrialNumber": 4, "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "max"}}},
            r"^tuner.classArgs.optimize_mode: expected maximize or minimize",
        ),
        (  # NNI's own test/ut/tools/nnictl/config_files/invalid/tuner-wrong-key.yml
            {"maxTrialNumber": 4, "tuner": {"wrongTunerKey": "TPE"}},
            r"^tuner: expected name \(builtinTunerName in NNI v1\) or className, got keys wrongTunerKey",
        ),
        ({"maxTrialNumber": 4, "tuner": {"name": "TPE"}, "advisor": {"name": "BOHB"}}, r"^tuner, advisor: NNI takes one of the two"),
        ({"maxTrialNumber": 4, "advisor": {"name": "Hyperband", "classArgs": {"eta": 1}}}, r"^advisor.classArgs.eta: expected a number > 1"),
    ],
)
def test_bad_experiment_settings_are_one_line_naming_the_key(experiment, message):
    with pytest.raises(ConfigError, match=message):
        convert_experiment({"lr": {"_type": "uniform", "_value": [0.001, 0.01]}}, experiment, name="x", **ARGS)


def test_optimize_mode_against_the_metric_s_direction_and_a_missing_trial_count_warn():
    with pytest.warns(UserWarning) as caught:
        search = convert_experiment(
            {"lr": {"_type": "uniform", "_value": [0.001, 0.01]}},
            {"tuner": {"builtinTunerName": "Anneal", "classArgs": {"optimize_mode": "minimize"}}},
            name="x", **ARGS,
        )["search"]
    assert search["mode"] == "min" and search["algo"] == "tpe" and "num_samples" not in search
    assert [str(w.message).split(";")[0] for w in caught] == [
        "maxTrialNumber: not set (NNI ran trials until maxExperimentDuration)",
        "tuner.classArgs.optimize_mode: minimize, but valid/auroc is better higher",
        "tuner 'Anneal' has no counterpart",
    ]


# -- files and the command -------------------------------------------------------


def _v2_config(folder: Path, **settings: Any) -> Path:
    config = {
        "trialCommand": "python3 mnist.py", "trialConcurrency": 3, "maxTrialNumber": 6,
        "tuner": {"name": "Random", "classArgs": {"optimize_mode": "maximize"}},
        "trainingService": {"platform": "local"}, **settings,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    return folder / "config.yml"


SPACE = {"lr": {"_type": "loguniform", "_value": [0.0001, 0.01]}, "batch_size": {"_type": "quniform", "_value": [16, 64, 16]}}


def test_cli_imports_a_config_alone_with_its_inline_search_space(tmp_path, capsys):
    config = _v2_config(tmp_path / "nni", searchSpace=SPACE)
    out = tmp_path / "from_nni.yaml"
    assert main(["import-nni", str(config), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and captured.err == ""
    loaded = load_config(out)
    assert (loaded.search.algo, loaded.search.num_samples, loaded.search.max_concurrent, loaded.search.mode) == ("random", 6, 3, "max")
    assert loaded.search.space["batch_size"].type == "int"
    assert out.read_text().startswith("# Converted from NNI: config.yml (its searchSpace).")


@pytest.mark.parametrize("key", ["searchSpaceFile", "searchSpacePath", "search_space_file"])
def test_cli_imports_a_config_whose_search_space_file_is_relative_to_it(tmp_path, capsys, key):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "space.json").write_text(json.dumps(SPACE))
    config = _v2_config(tmp_path / "nni", **{key: "../spaces/space.json"})
    out = tmp_path / "out.yaml"
    assert main(["import-nni", str(config), "-o", str(out)]) == 0
    assert sorted(load_config(out).search.space) == ["batch_size", "lr"]
    assert out.read_text().startswith(f"# Converted from NNI: config.yml and its {key} space.json.")


@pytest.mark.parametrize("order", [("space", "config"), ("config", "space")])
def test_cli_takes_a_space_and_a_config_in_either_order(tmp_path, order):
    files = {"space": tmp_path / "search_space.json", "config": _v2_config(tmp_path, searchSpaceFile="elsewhere.json")}
    files["space"].write_text(json.dumps(SPACE))
    out = tmp_path / "out.yaml"
    assert main(["import-nni", *(str(files[name]) for name in order), "-o", str(out)]) == 0
    assert load_config(out).search.num_samples == 6  # the config's settings, the given space


def test_a_real_snake_case_config_alone_is_read_not_parsed_as_json(tmp_path, capsys):
    out = tmp_path / "out.yaml"
    assert main(["import-nni", str(FIXTURES / "v3.0/examples/tutorials/hpo_nnictl/config.yaml"), "-o", str(out)]) == 2
    # its inline space was read: the refusal is about its keys, which ecg_cnn1d does not have
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("trial: error: search.space.features: not a param of solver 'ecg_cnn1d'")
    assert not out.exists()


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.json": '{"lr": {"_type": "uniform", "_value": [0, 1]}'}, r"a.json: invalid JSON at line 1, column \d+: Expecting"),
        ({"config.yml": "tuner:\n  name: TPE\n bad: [\n"}, r"config.yml: invalid YAML at line \d+, column \d+: "),
        ({"config.yml": "trialConcurrency: 1\nmaxTrialNumber: 2\n"}, r"config.yml: no search space: expected searchSpaceFile"),
        ({"config.yml": "useAnnotation: true\ntrialConcurrency: 1\n"}, r"config.yml: useAnnotation: the search space is NNI annotations"),
        ({"config.yml": "searchSpaceFile: missing.json\ntrialConcurrency: 1\n"}, r"missing.json: file not found"),
        ({"config.yml": "searchSpace: {}\ntrialConcurrency: 1\n"}, r"config.yml: searchSpace: the search space is empty"),
        ({"a.json": "[1, 2]"}, r"a.json: expected an NNI search space or experiment config \(a mapping\), got the list"),
        ({"a.json": json.dumps(SPACE), "b.json": json.dumps(SPACE)}, r"b.json: a second NNI search space"),
    ],
)
def test_cli_file_mistakes_are_one_line_naming_the_file(tmp_path, capsys, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert main(["import-nni", *(str(tmp_path / name) for name in files), "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("trial: error: ")
    assert re.search(message, err[0]), err[0]


def test_import_writes_a_config_that_loads(tmp_path):
    (tmp_path / "search_space.json").write_text(json.dumps(SPACE))
    config = _v2_config(tmp_path, searchSpaceFile="search_space.json")
    out = import_nni([tmp_path / "search_space.json", config], tmp_path / "from_nni.yaml", **ARGS)
    loaded = load_config(out)
    assert loaded.name == "from_nni" and loaded.search.algo == "random" and loaded.search.num_samples == 6
    assert _drawn(loaded.search.space["batch_size"].model_dump(exclude_none=True)) == [16, 32, 48, 64]


def test_import_of_a_space_the_solver_cannot_take_writes_nothing_and_shows_no_warnings(tmp_path, recwarn):
    (tmp_path / "search_space.json").write_text(json.dumps({"momentum_beta": {"_type": "normal", "_value": [0.5, 0.1]}}))
    with pytest.raises(ConfigError, match="search.space.momentum_beta: not a param of solver 'ecg_cnn1d'"):
        import_nni([tmp_path / "search_space.json"], tmp_path / "out.yaml", **ARGS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search_space.json"]
    # the normal -> uniform warning was about a config never written
    assert not [w for w in recwarn if "momentum_beta" in str(w.message)]


def test_cli_import_nni_shows_warnings_when_it_writes_and_errors_in_one_line(tmp_path, capsys):
    (tmp_path / "search_space.json").write_text(json.dumps({"lr": {"_type": "normal", "_value": [0.005, 0.001]}}))
    out = tmp_path / "mine.yaml"
    assert main(["import-nni", str(tmp_path / "search_space.json"), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert captured.err.splitlines() == [
        "trial: warning: search_space.lr: normal(0.005, 0.001) became uniform over [0.002, 0.008] (mu +- 3 sigma); "
        "Optuna has no normal distribution"
    ]
    assert load_config(out).search.space["lr"].low == pytest.approx(0.002)

    (tmp_path / "bad.json").write_text(json.dumps({"lr": {"_type": "layer_choice", "_value": [0, 1]}}))
    assert main(["import-nni", str(tmp_path / "bad.json"), "-o", str(tmp_path / "bad.yaml")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "trial: error: search_space.lr._type: 'layer_choice' has no Optuna counterpart; supported: "
        "choice, randint, uniform, quniform, loguniform, qloguniform, normal, qnormal"
    ]
    assert not (tmp_path / "bad.yaml").exists()


@pytest.mark.parametrize(
    "path, error",
    [
        ("v3.0/examples/tuners/mnist_keras_customized_advisor/search_space.json", "search_space.README: expected an NNI {_type, _value} entry"),
        ("v3.0/examples/tuners/mnist_keras_customized_advisor/config.yml", "search_space.README: expected an NNI {_type, _value} entry"),
        ("v3.0/test/training_service/config/naive_test/search_space.json", "search_space.x: expected an NNI {_type, _value} entry, got the list [1, 100]"),
        ("v3.0/test/ut/experiment/assets/search_space.json", "search_space.a: expected an NNI {_type, _value} entry, got the int 1"),
        ("v3.0/examples/trials/mnist-nested-search-space/search_space.json", "search_space.layer0: NNI's nested choice"),
        ("v3.0/test/ut/sdk/assets/search_space.json", "search_space.randint_fail_equal._value: randint [0, 0] is empty"),
    ],
)
def test_odd_real_nni_spaces_are_refused_in_one_line_naming_the_key(tmp_path, capsys, path, error):
    assert main(["import-nni", str(FIXTURES / path), "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"trial: error: {error}"), err


@pytest.mark.parametrize("path", NNI_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_real_nni_file_imports_or_is_refused_in_one_line(tmp_path, capsys, path):
    # a copy, so the fixture folder never receives an output
    shutil.copytree(path.parent, tmp_path / "nni")
    out = tmp_path / "out.yaml"
    code = main(["import-nni", str(tmp_path / "nni" / path.name), "-o", str(out)])
    err = capsys.readouterr().err.splitlines()
    if code == 0:
        load_config(out)
        assert all(line.startswith("trial: warning: ") for line in err)
    else:
        assert code == 2 and len(err) == 1 and err[0].startswith("trial: error: "), err
        assert not out.exists()


def test_the_fixtures_readme_names_the_source_of_every_file():
    readme = (FIXTURES / "README.md").read_text()
    assert all(str(path.relative_to(FIXTURES)) in readme for path in NNI_FILES)
