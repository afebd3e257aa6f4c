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
from trial.nni import convert_experiment, import_nni, read_nni
from trial.nni_space import nni_distribution

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
        ({"_type": "qloguniform", "_value": [1, 8, 1]}, {"type": "int", "low": 1, "high": 8, "log": True}),
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


# -- messages and edges in full (each case found by mutation testing) ---------------------

_NOT_AN_ENTRY = "x: expected an NNI {_type, _value} entry, got %s (a custom tuner's own format has no counterpart)"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a" * 58, _NOT_AN_ENTRY % ("the str '" + "a" * 58 + "'")),  # a repr of 60 characters is shown whole
        ("a" * 59, _NOT_AN_ENTRY % ("the str '" + "a" * 56 + "...")),  # past 60: cut to 57 and '...'
        ([1, 100], _NOT_AN_ENTRY % "the list [1, 100]"),
        (None, _NOT_AN_ENTRY % "nothing"),
        ({"_value": [1]}, "x._type: required in an NNI-style entry"),
        ({"b": 1, "a": 2, "_type": "choice", "_value": [1]}, "x.a: unknown key in an NNI-style entry; allowed: _type, _value"),
        ({"b": 1, 1: 2, "_type": "choice", "_value": [1]}, "x.1: unknown key in an NNI-style entry; allowed: _type, _value"),
        (
            {"_type": "choice", "_value": [1, {"_name": "Empty"}]},
            "x: NNI's nested choice (entries with _name) has no counterpart here; search each branch's params as keys of their own",
        ),
        (
            {"_type": "lognormal", "_value": [0, 1]},
            "x._type: 'lognormal' has no Optuna counterpart; supported: "
            "choice, randint, uniform, quniform, loguniform, qloguniform, normal, qnormal",
        ),
        ({"_type": "uniform", "_value": "0,1"}, "x._value: expected a non-empty list, got '0,1'"),
        ({"_type": "uniform", "_value": [0, 1, 2]}, "x._value: uniform expects 2 numbers, got [0, 1, 2]"),
        ({"_type": "uniform", "_value": [0, True]}, "x._value: uniform expects 2 numbers, got [0, True]"),
        ({"_type": "uniform", "_value": [0, float("inf")]}, "x._value: uniform expects 2 numbers, got [0, inf]"),
        ({"_type": "uniform", "_value": [0, float("nan")]}, "x._value: uniform expects 2 numbers, got [0, nan]"),
        ({"_type": "randint", "_value": [3, 2]}, "x._value: randint [3, 2] is empty: NNI draws low <= x < high"),
        ({"_type": "randint", "_value": [2, 6.5]}, "x._value: randint expects whole numbers, got [2, 6.5]"),
        ({"_type": "uniform", "_value": [1, 0]}, "x._value: uniform expects low <= high, got [1, 0]"),
        ({"_type": "qloguniform", "_value": [-1, 1, 1]}, "x._value: qloguniform needs low > 0, got [-1, 1, 1]"),
        ({"_type": "quniform", "_value": [0, 1, -1]}, "x._value: quniform needs q > 0, got [0, 1, -1]"),
        ({"_type": "normal", "_value": [0, -1]}, "x._value: normal needs sigma > 0, got [0, -1]"),
        # mu - 3 sigma still a float, mu + 3 sigma not
        ({"_type": "normal", "_value": [1.7e308, 1e307]}, "x._value: normal [1.7e+308, 1e+307] spans beyond what a float holds"),
        (
            {"_type": "quniform", "_value": [0.2, 1000, 1]},
            "x._value: quniform [0.2, 1000, 1] gives 1001 values with low or high off q's grid, "
            "too many for a choice (at most 1000); make low and high multiples of q",
        ),
    ],
)
def test_entry_mistakes_in_full(spec, message):
    with pytest.raises(ConfigError) as raised:
        nni_distribution("x", spec)
    assert str(raised.value) == message


def test_a_clipped_q_range_of_exactly_1000_values_is_still_a_choice():
    spec = _no_warnings(nni_distribution, "x", {"_type": "quniform", "_value": [0.2, 999, 1]})
    assert spec == {"type": "choice", "values": [0.2, *map(float, range(1, 1000))]}


@pytest.mark.parametrize(
    "spec, expected, warning",
    [
        (
            {"_type": "normal", "_value": [1, 2]},
            {"type": "uniform", "low": -5.0, "high": 7.0},
            "x: normal(1, 2) became uniform over [-5, 7] (mu +- 3 sigma); Optuna has no normal distribution",
        ),
        (
            {"_type": "qnormal", "_value": [0, 1, 1]},
            {"type": "int", "low": -3, "high": 3},
            "x: qnormal(0, 1, 1) became int over [-3, 3] (mu +- 3 sigma); Optuna has no normal distribution",
        ),
        (
            {"_type": "qnormal", "_value": [0, 1, 0.5]},
            {"type": "uniform", "low": -3, "high": 3, "step": 0.5},
            "x: qnormal(0, 1, 0.5) became uniform over [-3, 3] step 0.5 (mu +- 3 sigma); Optuna has no normal distribution",
        ),
        (  # NNI's qnormal is not clipped: round(0.8 / 0.25) * 0.25 = 0.75, below mu - 3 sigma, is drawn
            {"_type": "qnormal", "_value": [1.1, 0.1, 0.25]},
            {"type": "uniform", "low": 0.75, "high": 1.5, "step": 0.25},
            "x: qnormal(1.1, 0.1, 0.25) became uniform over [0.75, 1.5] step 0.25 (mu +- 3 sigma); Optuna has no normal distribution",
        ),
        (
            {"_type": "qloguniform", "_value": [1, 10, 10]},
            {"type": "choice", "values": [1, 10]},
            "x: qloguniform [1, 10, 10] became a choice of [1, 10]: the same values, without the "
            "log scale's weighting (Optuna has no stepped log range but for ints with step 1)",
        ),
        (  # collapsed to one value: that warning alone
            {"_type": "qloguniform", "_value": [0.5, 0.9, 2]},
            {"type": "choice", "values": [0.5]},
            "x: qloguniform [0.5, 0.9, 2] only ever draws 0.5; imported as that fixed value (a one-value choice)",
        ),
        (
            {"_type": "qnormal", "_value": [10, 0.01, 5]},
            {"type": "choice", "values": [10]},
            "x: qnormal [10, 0.01, 5] only ever draws 10; imported as that fixed value (a one-value choice)",
        ),
        (
            {"_type": "qloguniform", "_value": [1, 100, 10]},
            {"type": "choice", "values": [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]},
            "x: qloguniform [1, 100, 10] became a choice of 11 values from 1 to 100: the same values, without the "
            "log scale's weighting (Optuna has no stepped log range but for ints with step 1)",
        ),
        (  # past 6 values the warning counts them
            {"_type": "qloguniform", "_value": [1, 60, 10]},
            {"type": "choice", "values": [1, 10, 20, 30, 40, 50, 60]},
            "x: qloguniform [1, 60, 10] became a choice of 7 values from 1 to 60: the same values, without the "
            "log scale's weighting (Optuna has no stepped log range but for ints with step 1)",
        ),
        (
            {"_type": "qloguniform", "_value": [1, 50, 10]},
            {"type": "choice", "values": [1, 10, 20, 30, 40, 50]},
            "x: qloguniform [1, 50, 10] became a choice of [1, 10, 20, 30, 40, 50]: the same values, without the "
            "log scale's weighting (Optuna has no stepped log range but for ints with step 1)",
        ),
        (
            {"_type": "qloguniform", "_value": [10, 100, 10]},
            {"type": "int", "low": 10, "high": 100, "step": 10},
            "x: qloguniform [10, 100, 10] became int over [10, 100] step 10: the same values, without the "
            "log scale's weighting (Optuna has no stepped log range but for ints with step 1)",
        ),
    ],
)
def test_approximations_say_what_they_became_in_full(spec, expected, warning):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = nni_distribution("x", spec)
    assert result == expected
    assert [type(v) for v in result.values()] == [type(v) for v in expected.values()]
    assert [str(w.message) for w in caught] == [warning]


def test_convert_experiment_writes_a_whole_sweep_config():
    space = {"lr": {"_type": "loguniform", "_value": [0.001, 0.1]}}
    assert convert_experiment(space, None, name="n", solver="image_cnn", dataset="digits", metric="valid/loss") == {
        "name": "n",
        "seed": 42,
        "data": {"dataset": "digits"},
        "solver": {"name": "image_cnn", "params": {}},
        "search": {"metric": "valid/loss", "space": {"lr": {"type": "loguniform", "low": 0.001, "high": 0.1}}},
    }


_ADVISOR = "the trial budget is the solver's epochs"


@pytest.mark.parametrize(
    "experiment, search, caught",
    [
        # NNI reads keys case- and underscore-blind; whole floats are whole numbers.
        ({"trial_concurrency": 4.0, "MaxTrialNum": 5.0}, {"max_concurrent": 4, "num_samples": 5}, []),
        ({"maxTrialNumber": 4, "tuner": None}, {"num_samples": 4}, []),  # an empty block: trial's default
        ({"maxTrialNumber": 4, "tuner": {}}, {"num_samples": 4}, []),
        (
            {"maxTrialNumber": 1, "tuner": {"name": "Random", "class_args": {"optimize_mode": "minimize"}}},
            {"num_samples": 1, "mode": "min", "algo": "random"},
            [],
        ),
        (
            {"maxTrialNumber": 4, "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "maximize"}}},
            {"num_samples": 4, "mode": "max", "algo": "tpe"},
            ["tuner.classArgs.optimize_mode: maximize, but valid/loss is better lower; pass the metric NNI's trials reported with --metric"],
        ),
        ({"maxTrialNumber": 4, "tuner": {"builtinTunerName": "TPE_legacy"}}, {"num_samples": 4, "algo": "tpe"}, []),
        (
            {"maxTrialNumber": 4, "tuner": {"classFileName": "my.py", "className": "My"}},
            {"num_samples": 4, "algo": "tpe"},
            ["custom tuner 'My' has no counterpart; using TPE"],
        ),
        ({"maxTrialNumber": 4, "tuner": {"codeDir": "."}}, {"num_samples": 4, "algo": "tpe"}, ["custom tuner '.' has no counterpart; using TPE"]),
        (  # v1: the class file alone, or the code folder alone, names a custom tuner
            {"maxTrialNumber": 4, "tuner": {"classFileName": "my.py"}},
            {"num_samples": 4, "algo": "tpe"},
            ["custom tuner 'my.py' has no counterpart; using TPE"],
        ),
        (
            {"maxTrialNumber": 4, "tuner": {"codeDirectory": "/src"}},
            {"num_samples": 4, "algo": "tpe"},
            ["custom tuner '/src' has no counterpart; using TPE"],
        ),
        (  # eta 2: the smallest whole halving rate
            {"maxTrialNumber": 4, "advisor": {"name": "Hyperband", "classArgs": {"eta": 2}}},
            {"num_samples": 4, "algo": "random", "scheduler": {"type": "asha", "reduction_factor": 2}},
            [f"advisor 'Hyperband' became random sampling with ASHA early stopping (search.scheduler); {_ADVISOR}"],
        ),
        (
            {"maxTrialNumber": 4, "advisor": {"builtinAdvisorName": "Hyperband"}},
            {"num_samples": 4, "algo": "random", "scheduler": {"type": "asha"}},
            [f"advisor 'Hyperband' became random sampling with ASHA early stopping (search.scheduler); {_ADVISOR}"],
        ),
        (
            {"maxTrialNumber": 4, "advisor": {"name": "BOHB", "classArgs": {"eta": 1.5, "optimize_mode": "minimize"}}},
            {"num_samples": 4, "mode": "min", "algo": "tpe", "scheduler": {"type": "asha", "reduction_factor": 1.5}},
            [f"advisor 'BOHB' became TPE sampling with ASHA early stopping (search.scheduler), a fair counterpart; {_ADVISOR}"],
        ),
        ({"maxTrialNumber": 4, "assessor": {}}, {"num_samples": 4}, []),
        (
            {"maxTrialNumber": 4, "assessor": {"builtinAssessorName": "Curvefitting"}},
            {"num_samples": 4},
            ["assessor 'Curvefitting' has no counterpart; its early stopping is dropped (search.scheduler: {type: asha} is ASHA's)"],
        ),
        (
            {"tuner": {"name": "TPE", "classArgs": {"optimize_mode": "minimize"}}},
            {"mode": "min", "algo": "tpe"},
            ["maxTrialNumber: not set (NNI ran trials until maxExperimentDuration); search.num_samples keeps trial's default"],
        ),
    ],
)
def test_experiment_settings_in_full(experiment, search, caught):
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        result = convert_experiment({"lr": {"_type": "uniform", "_value": [0.001, 0.01]}}, experiment, name="x",
                                    solver="ecg_cnn1d", dataset="demo_ecg", metric="valid/loss")["search"]
    assert result.pop("space") == {"lr": {"type": "uniform", "low": 0.001, "high": 0.01}}
    assert result == {"metric": "valid/loss", **search}
    assert [str(w.message) for w in recorded] == caught


@pytest.mark.parametrize(
    "experiment, message",
    [
        ({"trialConcurrency": True, "maxTrialNumber": 4}, "trialConcurrency: expected a whole number >= 1, got True"),
        ({"maxTrialNumber": 2.5}, "maxTrialNumber: expected a whole number >= 1, got 2.5"),
        ({"maxTrialNumber": 4, "tuner": "TPE"}, "tuner: expected a mapping (name, classArgs), got the str 'TPE'"),
        ({"maxTrialNumber": 4, "tuner": {"name": "TPE", "classArgs": [1]}}, "tuner.classArgs: expected a mapping, got the list [1]"),
        ({"maxTrialNumber": 4, "advisor": {"name": "BOHB", "classArgs": {"eta": "3"}}}, "advisor.classArgs.eta: expected a number > 1, got '3'"),
        (
            {"maxTrialNumber": 4, "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "max"}}},
            "tuner.classArgs.optimize_mode: expected maximize or minimize, got 'max'",
        ),
        (
            {"maxTrialNumber": 4, "advisor": {"gpuIndices": 0, "classArgs": {}}},
            "advisor: expected name (builtinAdvisorName in NNI v1) or className, got keys gpuIndices, classArgs",
        ),
    ],
)
def test_experiment_mistakes_in_full(experiment, message):
    with pytest.raises(ConfigError) as raised:
        convert_experiment({"lr": {"_type": "uniform", "_value": [0.001, 0.01]}}, experiment, name="x", **ARGS)
    assert str(raised.value) == message


def test_optimize_mode_agreeing_with_the_metric_or_an_unknown_metric_does_not_warn():
    experiment = {"maxTrialNumber": 4, "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "maximize"}}}
    for metric in ("valid/auroc", "valid/bleu"):
        search = _no_warnings(lambda: convert_experiment({}, experiment, name="x", solver="s", dataset="d", metric=metric))
        assert search["search"]["mode"] == "max"


def _files(folder: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))


_SPACE_JSON = json.dumps(SPACE)


@pytest.mark.parametrize(
    "files, given, message",
    [
        ({"s.json": _SPACE_JSON, "s2.json": _SPACE_JSON}, ["s.json", "s2.json"],
         "{}/s2.json: a second NNI search space; give a search space, an experiment config, or one of each"),
        ({"a.yml": {"trialConcurrency": 1}, "b.yml": {"maxTrialNumber": 1}}, ["a.yml", "b.yml"],
         "{}/b.yml: a second NNI experiment config; give a search space, an experiment config, or one of each"),
        ({"c.yml": {"trialConcurrency": 1, "searchSpace": SPACE, "searchSpaceFile": "s.json"}}, ["c.yml"],
         "{}/c.yml: searchSpace, searchSpaceFile: NNI takes one of the two, not both"),
        ({"c.yml": {"trialConcurrency": 1, "searchSpaceFile": 3}}, ["c.yml"], "{}/c.yml: searchSpaceFile: expected a path, got the int 3"),
        ({"c.yml": {"trialConcurrency": 1, "searchSpace": [1]}}, ["c.yml"],
         "{}/c.yml: searchSpace: expected a search space (a mapping of searched params), got the list [1]"),
        ({"c.yml": {"trialConcurrency": 1, "useAnnotation": False}}, ["c.yml"],
         "{}/c.yml: no search space: expected searchSpaceFile, searchSpacePath or searchSpace; or pass SEARCH_SPACE_JSON first"),
        ({"c.yml": {"trialConcurrency": 1, "use_annotation": True}}, ["c.yml"],
         "{}/c.yml: use_annotation: the search space is NNI annotations in the trial code; "
         "write it out as a search_space.json and pass that first"),
        ({"c.yml": {"trialConcurrency": 1, "searchSpacePath": "s.json"}, "s.json": "{}"}, ["c.yml"],
         "{}/s.json: the search space is empty; nothing to search"),
        ({"c.yml": {"trialConcurrency": 1, "searchSpaceFile": "s.json"}, "s.json": "[1]"}, ["c.yml"],
         "{}/s.json: expected a search space (a mapping of searched params), got the list [1]"),
        ({"s.json": "{}"}, ["s.json"], "{}/s.json: the search space is empty; nothing to search"),
        # The problem, not PyYAML's context line ("while parsing a flow sequence") above it.
        ({"c.yml": "tuner: [TPE\n"}, ["c.yml"], "{}/c.yml: invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
        ({"c.yml": "a: b: c\n"}, ["c.yml"], "{}/c.yml: invalid YAML at line 1, column 5: mapping values are not allowed here"),
        ({"bad.JSON": "{"}, ["bad.JSON"], "{}/bad.JSON: invalid JSON at line 1, column 2: Expecting property name enclosed in double quotes"),
        ({"bad.yml": "a: 1\n\x07\n"}, ["bad.yml"], "{}/bad.yml: invalid YAML: unacceptable character #x0007: special characters are not allowed"),
        ({"latin.json": b"\xff{"}, ["latin.json"],
         "{}/latin.json: cannot read: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
        ({}, ["missing.json"], "{}/missing.json: file not found"),
        ({"empty.json": ""}, ["empty.json"], "{}/empty.json: expected an NNI search space or experiment config (a mapping), got nothing"),
    ],
)
def test_read_nni_mistakes_in_full(tmp_path, files, given, message):
    _files(tmp_path, files)
    with pytest.raises(ConfigError) as raised:
        read_nni([tmp_path / name for name in given])
    assert str(raised.value) == message.format(tmp_path)


def test_read_nni_cannot_read_a_folder(tmp_path):
    (tmp_path / "space.json").mkdir()
    with pytest.raises(ConfigError) as raised:
        read_nni([tmp_path / "space.json"])
    assert str(raised.value) == f"{tmp_path / 'space.json'}: cannot read: Is a directory"


@pytest.mark.parametrize(
    "files, given, source",
    [
        ({"s.json": _SPACE_JSON}, ["s.json"], "s.json"),
        ({"s.json": _SPACE_JSON, "c.yml": {"trialConcurrency": 1, "searchSpaceFile": "other.json"}}, ["c.yml", "s.json"], "s.json and c.yml"),
        ({"s.json": _SPACE_JSON, "c.yml": {"trialConcurrency": 1, "searchSpaceFile": "s.json"}}, ["c.yml"], "c.yml and its searchSpaceFile s.json"),
        ({"c.yml": {"trialConcurrency": 1, "search_space": SPACE}}, ["c.yml"], "c.yml (its search_space)"),
        # A search space whose params share names with experiment settings is still a search space.
        ({"s.json": json.dumps({"trial": SPACE["lr"], "Tuner": SPACE["batch_size"]})}, ["s.json"], "s.json"),
    ],
)
def test_read_nni_tells_a_space_from_a_config_and_names_its_sources(tmp_path, files, given, source):
    _files(tmp_path, files)
    space, experiment, told = read_nni([tmp_path / name for name in given])
    assert told == source
    assert sorted(space) == (["Tuner", "trial"] if "trial" in space else ["batch_size", "lr"])
    assert (experiment is None) == (given == ["s.json"])


def test_a_search_space_file_under_home_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    _files(tmp_path, {"home/space.json": _SPACE_JSON, "c.yml": {"trialConcurrency": 1, "searchSpaceFile": "~/space.json"}})
    space, _, source = read_nni([tmp_path / "c.yml"])
    assert space == SPACE and source == "c.yml and its searchSpaceFile space.json"


def test_import_writes_the_header_and_the_config_in_its_own_order_and_then_warns(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"lr": {"_type": "normal", "_value": [0.005, 0.001]}}))
    out = tmp_path / "new" / "dir" / "sweep.yaml"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert import_nni([tmp_path / "s.json"], out, **ARGS) == out
    assert [str(w.message) for w in caught] == [
        "search_space.lr: normal(0.005, 0.001) became uniform over [0.002, 0.008] (mu +- 3 sigma); Optuna has no normal distribution"
    ]
    assert out.read_text() == (
        "# Converted from NNI: s.json.\n"
        "# The searched keys must be params of the solver; point data at your own labels CSV\n"
        "# (data.labels) and set the fixed solver params under solver.params.\n"
        "name: sweep\nseed: 42\ndata:\n  dataset: demo_ecg\nsolver:\n  name: ecg_cnn1d\n  params: {}\n"
        "search:\n  metric: valid/auroc\n  space:\n    lr:\n      type: uniform\n      low: 0.002\n      high: 0.008\n"
    )
    assert [p.name for p in out.parent.iterdir()] == ["sweep.yaml"]  # no partial file left


def test_import_into_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SPACE))
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "out.yaml"
    with pytest.raises(ConfigError) as raised:
        import_nni([tmp_path / "s.json"], out, **ARGS)
    assert str(raised.value) == f"{out}: cannot write: File exists"
