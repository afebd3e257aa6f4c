"""NNI's search spaces and experiment configs, read into trial's forms.

Microsoft NNI was archived in 2024; its users keep their `search_space.json` and
`config.yml`. `nni_distribution` maps one NNI `{_type, _value}` entry onto a trial
distribution (used for NNI-style entries inside a trial config too), and
`convert_experiment` turns a whole NNI experiment into a sweep config for
search_spaces/. Types with an exact Optuna counterpart map silently; normal and
qnormal become the closest bounded range Optuna has, with a warning that says so.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Mapping

import yaml

from trial.errors import ConfigError, first_line

# normal(mu, sigma) has no bounds; Optuna's distributions need them. mu +- 3 sigma holds
# 99.7% of NNI's draws.
NORMAL_SIGMAS = 3.0
EXACT_TYPES = ("choice", "randint", "uniform", "quniform", "loguniform", "qloguniform")
APPROXIMATED_TYPES = ("normal", "qnormal")
# NNI tuner names -> trial's search.algo; the rest fall back to TPE with a warning.
TUNERS = {"tpe": "tpe", "random": "random", "anneal": "tpe"}


def nni_distribution(where: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """One NNI entry as a trial distribution dict; `where` names it in errors and warnings."""
    nni_type, value = spec.get("_type"), spec.get("_value")
    extra = sorted(set(spec) - {"_type", "_value"})
    if extra:
        raise ConfigError(f"{where}.{extra[0]}: unknown key in an NNI-style entry; allowed: _type, _value")
    if nni_type not in EXACT_TYPES + APPROXIMATED_TYPES:
        allowed = ", ".join(EXACT_TYPES + APPROXIMATED_TYPES)
        raise ConfigError(f"{where}._type: {nni_type!r} has no Optuna counterpart; supported: {allowed}")
    if not isinstance(value, list):
        raise ConfigError(f"{where}._value: expected a list, got {value!r}")
    if nni_type == "choice":
        return {"type": "choice", "values": value}
    arity = 3 if nni_type.startswith("q") else 2
    if len(value) != arity or not all(_is_number(v) for v in value):
        raise ConfigError(f"{where}._value: {nni_type} expects {arity} numbers, got {value!r}")
    if nni_type == "randint":  # NNI's upper bound is exclusive
        return {"type": "int", "low": value[0], "high": value[1] - 1}
    if nni_type == "uniform":
        return {"type": "uniform", "low": value[0], "high": value[1]}
    if nni_type == "quniform":
        return {"type": "uniform", "low": value[0], "high": value[1], "step": value[2]}
    if nni_type == "loguniform":
        return {"type": "loguniform", "low": value[0], "high": value[1]}
    if nni_type == "qloguniform":
        low, high, q = value
        if q == 1 and float(low).is_integer() and float(high).is_integer():
            return {"type": "int", "low": low, "high": high, "log": True}
        warnings.warn(f"{where}: qloguniform step q={q} dropped; Optuna cannot combine a log scale with a step", stacklevel=2)
        return {"type": "loguniform", "low": low, "high": high}
    mu, sigma = value[0], value[1]
    low, high = mu - NORMAL_SIGMAS * sigma, mu + NORMAL_SIGMAS * sigma
    warnings.warn(
        f"{where}: {nni_type}({mu}, {sigma}) became uniform over [{low:g}, {high:g}] (mu +- {NORMAL_SIGMAS:g} sigma); "
        "Optuna has no normal distribution",
        stacklevel=2,
    )
    spec_out: dict[str, Any] = {"type": "uniform", "low": low, "high": high}
    if nni_type == "qnormal":
        spec_out["step"] = value[2]
    return spec_out


def convert_experiment(
    space: Mapping[str, Any],
    experiment: Mapping[str, Any] | None = None,
    *,
    name: str,
    solver: str,
    dataset: str,
    metric: str,
) -> dict[str, Any]:
    """A sweep config from an NNI search space and (optionally) its experiment config."""
    experiment = experiment or {}
    search: dict[str, Any] = {"metric": metric}
    concurrency = experiment.get("trialConcurrency")
    trials = experiment.get("maxTrialNumber", experiment.get("maxTrialNum"))
    if concurrency is not None:
        search["max_concurrent"] = concurrency
    if trials is not None:
        search["num_samples"] = trials
    tuner = experiment.get("tuner") or {}
    tuner_name = str(tuner.get("name", tuner.get("builtinTunerName", "TPE")))
    if tuner_name.lower() not in TUNERS:
        warnings.warn(f"tuner.name: NNI tuner {tuner_name!r} has no counterpart here; the sweep uses TPE", stacklevel=2)
    search["algo"] = TUNERS.get(tuner_name.lower(), "tpe")
    mode = (tuner.get("classArgs") or {}).get("optimize_mode")
    if mode is not None:
        search["mode"] = {"maximize": "max", "minimize": "min"}.get(mode, mode)
    search["space"] = {key: nni_distribution(f"search_space.{key}", spec) for key, spec in space.items()}
    return {
        "name": name,
        "seed": 42,
        "data": {"dataset": dataset},
        "solver": {"name": solver, "params": {}},
        "search": search,
    }


def import_nni(
    space_path: Path,
    experiment_path: Path | None,
    out: Path,
    *,
    solver: str,
    dataset: str,
    metric: str,
) -> Path:
    """Read NNI's files, write the sweep config to `out`, check it loads, return `out`."""
    from trial.config import load_config

    space = _read(space_path, json.loads)
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{space_path}: expected a JSON object of searched params")
    experiment = _read(experiment_path, yaml.safe_load) if experiment_path else None
    if experiment is not None and not isinstance(experiment, dict):
        raise ConfigError(f"{experiment_path}: expected an NNI experiment config (a YAML mapping)")
    config = convert_experiment(space, experiment, name=out.stem, solver=solver, dataset=dataset, metric=metric)
    header = (
        f"# Converted from NNI: {space_path.name}" + (f" and {experiment_path.name}" if experiment_path else "") + ".\n"
        "# The searched keys must be params of the solver; point data at your own labels CSV\n"
        "# (data.labels) and set the fixed solver params under solver.params.\n"
    )
    text = header + yaml.safe_dump(config, sort_keys=False)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(text)
    try:
        load_config(partial)  # the result must load as it stands, else nothing is written
    except ConfigError:
        partial.unlink()
        raise
    partial.replace(out)
    return out


def _read(path: Path, parse: Any) -> Any:
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot parse: {first_line(error)}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
