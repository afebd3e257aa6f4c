"""NNI's search spaces and experiment configs, read into trial's forms.

Microsoft NNI was archived in 2024; its users keep their `search_space.json` and
`config.yml`. `nni_distribution` maps one NNI `{_type, _value}` entry onto a trial
distribution (used for NNI-style entries inside a trial config too), `read_nni` reads
NNI's files (a search space, an experiment config of NNI v1 or v2 naming or holding
one, or both), and `convert_experiment` turns them into a sweep config for
search_spaces/.

The bounded types keep exactly the values NNI draws: `quniform` and `qloguniform` draw
`clip(round(x / q) * q, low, high)`, the multiples of q in the range plus low and high
themselves where those are off q's grid (a choice then, a stepped range otherwise); a
range that NNI collapses to one value is imported as that fixed value, with a warning.
Exact counterparts map silently; the unbounded normal and qnormal, and the log weighting
of a stepped log range, become the closest Optuna has, with a warning that says so.
"""
from __future__ import annotations

import json
import math
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from trial.errors import ConfigError, first_line

# normal(mu, sigma) has no bounds; Optuna's distributions need them. mu +- 3 sigma holds
# 99.7% of NNI's draws.
NORMAL_SIGMAS = 3.0
EXACT_TYPES = ("choice", "randint", "uniform", "quniform", "loguniform", "qloguniform")
APPROXIMATED_TYPES = ("normal", "qnormal")
# A q-range whose ends NNI clips off q's grid is held exactly only by a choice; past this
# many values that choice is no longer a search space anyone meant.
MAX_CHOICE_VALUES = 1000
# NNI tuner and advisor names (NNI compares them lower-cased) -> trial's search.algo;
# the rest fall back to TPE with a warning naming them.
TUNERS = {"tpe": "tpe", "tpe_legacy": "tpe", "random": "random"}
# Successive-halving advisors -> the sampler that picks their configs; ASHA does the halving.
ADVISORS = {"hyperband": "random", "bohb": "tpe"}
OPTIMIZE_MODES = {"maximize": "max", "minimize": "min"}
# Top-level keys (in NNI's case- and underscore-blind spelling) that only an experiment
# config has: how a file is told from a search space.
EXPERIMENT_KEYS = {
    "trialconcurrency", "searchspace", "searchspacefile", "searchspacepath", "tuner", "advisor", "assessor",
    "trialcommand", "trial", "trainingservice", "trainingserviceplatform", "maxtrialnumber", "maxtrialnum",
    "useannotation",
}
_HALF = Decimal("0.5")


def nni_distribution(where: str, spec: Any) -> dict[str, Any]:
    """One NNI entry as a trial distribution dict; `where` names it in errors and warnings."""
    if not isinstance(spec, Mapping):
        # NNI passes any format through to a custom tuner; only _type/_value entries have a meaning here.
        raise ConfigError(
            f"{where}: expected an NNI {{_type, _value}} entry, got {_shown(spec)} "
            "(a custom tuner's own format has no counterpart)"
        )
    extra = sorted(set(spec) - {"_type", "_value"}, key=str)
    if extra:
        raise ConfigError(f"{where}.{extra[0]}: unknown key in an NNI-style entry; allowed: _type, _value")
    missing = [key for key in ("_type", "_value") if key not in spec]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required in an NNI-style entry")
    nni_type, value = spec["_type"], spec["_value"]
    if nni_type not in EXACT_TYPES + APPROXIMATED_TYPES:
        allowed = ", ".join(EXACT_TYPES + APPROXIMATED_TYPES)
        raise ConfigError(f"{where}._type: {nni_type!r} has no Optuna counterpart; supported: {allowed}")
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}._value: expected a non-empty list, got {value!r}")
    if nni_type == "choice":
        if any(isinstance(option, Mapping) and "_name" in option for option in value):
            raise ConfigError(
                f"{where}: NNI's nested choice (entries with _name) has no counterpart here; "
                "search each branch's params as keys of their own"
            )
        return {"type": "choice", "values": value}
    arity = 3 if nni_type.startswith("q") else 2
    if len(value) != arity or not all(_is_number(v) for v in value):
        raise ConfigError(f"{where}._value: {nni_type} expects {arity} numbers, got {value!r}")
    if arity == 3 and value[2] <= 0:
        raise ConfigError(f"{where}._value: {nni_type} needs q > 0, got {value!r}")
    if nni_type in APPROXIMATED_TYPES:
        return _normal(where, nni_type, value)
    low, high = value[0], value[1]
    if nni_type == "randint":
        return _randint(where, low, high)
    if low > high:
        raise ConfigError(f"{where}._value: {nni_type} expects low <= high, got {value!r}")
    if "log" in nni_type and low <= 0:
        raise ConfigError(f"{where}._value: {nni_type} needs low > 0, got {value!r}")
    if low == high:
        return _fixed(where, nni_type, value, low)
    if nni_type == "uniform":
        return {"type": "uniform", "low": low, "high": high}
    if nni_type == "loguniform":
        return {"type": "loguniform", "low": low, "high": high}
    spec_out = _quantized(where, nni_type, value, low, high, value[2], clipped=True, log=nni_type == "qloguniform")
    if nni_type == "qloguniform" and not spec_out.get("log") and not _is_fixed(spec_out):
        warnings.warn(
            f"{where}: qloguniform {_listed(value)} became {_describe(spec_out)}: the same values, without the "
            "log scale's weighting (Optuna has no stepped log range but for ints with step 1)",
            stacklevel=2,
        )
    return spec_out


def _randint(where: str, low: float, high: float) -> dict[str, Any]:
    """NNI's randint draws low <= x < high."""
    if not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}._value: randint expects whole numbers, got {_listed([low, high])}")
    low, high = int(low), int(high)
    if high - low < 1:
        raise ConfigError(f"{where}._value: randint {_listed([low, high])} is empty: NNI draws low <= x < high")
    if high - low == 1:
        return _fixed(where, "randint", [low, high], low)
    return {"type": "int", "low": low, "high": high - 1}


def _normal(where: str, nni_type: str, value: list[float]) -> dict[str, Any]:
    """normal and qnormal over mu +- 3 sigma, with a warning."""
    mu, sigma = value[0], value[1]
    if sigma <= 0:
        raise ConfigError(f"{where}._value: {nni_type} needs sigma > 0, got {value!r}")
    low, high = mu - NORMAL_SIGMAS * sigma, mu + NORMAL_SIGMAS * sigma
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{where}._value: {nni_type} {_listed(value)} spans beyond what a float holds")
    if nni_type == "qnormal":  # NNI's round(normal / q) * q: multiples of q, unclipped
        spec_out = _quantized(where, nni_type, value, low, high, value[2], clipped=False, log=False)
        if _is_fixed(spec_out):
            return spec_out
    else:
        spec_out = {"type": "uniform", "low": low, "high": high}
    warnings.warn(
        f"{where}: {nni_type}({', '.join(str(v) for v in value)}) became {_describe(spec_out)} "
        f"(mu +- {NORMAL_SIGMAS:g} sigma); Optuna has no normal distribution",
        stacklevel=2,
    )
    return spec_out


def _quantized(
    where: str, nni_type: str, value: list[float], low: float, high: float, q: float, *, clipped: bool, log: bool
) -> dict[str, Any]:
    """The values of NNI's `round(x / q) * q` for x over [low, high], then (`clipped`, the
    q(log)uniform types) `clip(..., low, high)`. Decimal arithmetic keeps 0.1 * 3 at 0.3."""
    step, first_x, last_x = _decimal(q), _decimal(low), _decimal(high)
    # The multiples k of q that some x in (low, high) rounds to.
    k_first = math.floor(first_x / step + _HALF)
    k_last = math.ceil(last_x / step - _HALF)
    first, last = k_first * step, k_last * step
    count = k_last - k_first + 1
    if clipped and (first < first_x or last > last_x):
        # The clip puts low and high themselves among the values, off q's grid: only a choice holds that.
        if count > MAX_CHOICE_VALUES:
            raise ConfigError(
                f"{where}._value: {nni_type} {_listed(value)} gives {count} values with low or high off q's grid, "
                f"too many for a choice (at most {MAX_CHOICE_VALUES}); make low and high multiples of q"
            )
        values = sorted({min(max(k * step, first_x), last_x) for k in range(k_first, k_last + 1)})
        if len(values) == 1:
            return _fixed(where, nni_type, value, _number(values[0]))
        whole = all(v == v.to_integral_value() for v in values)
        return {"type": "choice", "values": [int(v) if whole else float(v) for v in values]}
    if count == 1:
        return _fixed(where, nni_type, value, _number(first))
    whole = step == step.to_integral_value() and first == first.to_integral_value()
    spec_out: dict[str, Any] = {"type": "int" if whole else "uniform", "low": _number(first), "high": _number(last)}
    if not whole or step != 1:
        spec_out["step"] = _number(step)
    elif log and first > 0:
        spec_out["log"] = True  # Optuna's one stepped log range: ints, step 1
    return spec_out


def _fixed(where: str, nni_type: str, value: list[float], fixed: float) -> dict[str, Any]:
    warnings.warn(
        f"{where}: {nni_type} {_listed(value)} only ever draws {fixed!r}; "
        "imported as that fixed value (a one-value choice)",
        stacklevel=2,
    )
    return {"type": "choice", "values": [fixed]}


def _is_fixed(spec: Mapping[str, Any]) -> bool:
    return spec["type"] == "choice" and len(spec["values"]) == 1


def _describe(spec: Mapping[str, Any]) -> str:
    """A mapped distribution in a few words, for warnings."""
    if spec["type"] == "choice":
        values = spec["values"]
        shown = _listed(values) if len(values) <= 6 else f"{len(values)} values from {values[0]:g} to {values[-1]:g}"
        return f"a choice of {shown}"
    text = f"{spec['type']} over [{spec['low']:g}, {spec['high']:g}]"
    if "step" in spec:
        text += f" step {spec['step']:g}"
    return text  # never a log range: qloguniform is described only when its log scale was dropped


def convert_experiment(
    space: Mapping[str, Any],
    experiment: Mapping[str, Any] | None = None,
    *,
    name: str,
    solver: str,
    dataset: str,
    metric: str,
) -> dict[str, Any]:
    """A sweep config from an NNI search space and (optionally) its experiment config,
    in NNI v1 or v2 naming (NNI reads keys case- and underscore-blind, and so does this)."""
    search: dict[str, Any] = {"metric": metric}
    if experiment is not None:
        search.update(_search_settings(experiment, metric))
    search["space"] = {key: nni_distribution(f"search_space.{key}", spec) for key, spec in space.items()}
    return {
        "name": name,
        "seed": 42,
        "data": {"dataset": dataset},
        "solver": {"name": solver, "params": {}},
        "search": search,
    }


def _search_settings(experiment: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """search.* from an experiment config: concurrency, trial count, sampler, mode, scheduler."""
    search: dict[str, Any] = {}
    concurrency = _setting(experiment, "trialConcurrency")
    if concurrency is not None:
        search["max_concurrent"] = _whole(concurrency)
    trials = _setting(experiment, "maxTrialNumber", "maxTrialNum")
    if trials is not None:
        search["num_samples"] = _whole(trials)
    else:
        warnings.warn(
            "maxTrialNumber: not set (NNI ran trials until maxExperimentDuration); "
            "search.num_samples keeps trial's default",
            stacklevel=2,
        )
    tuner, advisor = _setting(experiment, "tuner"), _setting(experiment, "advisor")
    if tuner is not None and advisor is not None:
        raise ConfigError(f"{tuner[0]}, {advisor[0]}: NNI takes one of the two, not both")
    if advisor is not None:
        kind, algorithm = "advisor", advisor[1]
    else:
        kind, algorithm = "tuner", tuner[1] if tuner is not None else None
    if algorithm:  # no tuner (or an empty block): trial's default sampler
        search.update(_algorithm(kind, algorithm, metric))
    assessor = _setting(experiment, "assessor")
    if assessor is not None and assessor[1]:
        _, label = _identify("assessor", assessor[1])
        warnings.warn(
            f"{label} has no counterpart; its early stopping is dropped (search.scheduler: {{type: asha}} is ASHA's)",
            stacklevel=2,
        )
    return search


def _algorithm(kind: str, algorithm: Any, metric: str) -> dict[str, Any]:
    """search.algo, search.mode and search.scheduler from NNI's tuner or advisor block."""
    builtin, label = _identify(kind, algorithm)
    search: dict[str, Any] = {}
    class_args = _setting(algorithm, "classArgs")
    class_args = class_args[1] if class_args is not None else {}
    if not isinstance(class_args, Mapping):
        raise ConfigError(f"{kind}.classArgs: expected a mapping, got {_shown(class_args)}")
    mode = class_args.get("optimize_mode")
    if mode is not None:
        if mode not in OPTIMIZE_MODES:
            raise ConfigError(f"{kind}.classArgs.optimize_mode: expected maximize or minimize, got {mode!r}")
        search["mode"] = OPTIMIZE_MODES[mode]
        _check_direction(kind, mode, metric)
    if builtin in TUNERS:
        search["algo"] = TUNERS[builtin]
    elif builtin in ADVISORS:
        search["algo"] = ADVISORS[builtin]
        scheduler: dict[str, Any] = {"type": "asha"}
        eta = class_args.get("eta")
        if eta is not None:
            if not _is_number(eta) or eta <= 1:
                raise ConfigError(f"{kind}.classArgs.eta: expected a number > 1, got {eta!r}")
            scheduler["reduction_factor"] = eta
        search["scheduler"] = scheduler
        sampler, fair = ("TPE", ", a fair counterpart") if search["algo"] == "tpe" else ("random", "")
        warnings.warn(
            f"{label} became {sampler} sampling with ASHA early stopping (search.scheduler){fair}; "
            "the trial budget is the solver's epochs",
            stacklevel=2,
        )
    else:
        search["algo"] = "tpe"
        warnings.warn(f"{label} has no counterpart; using TPE", stacklevel=2)
    return search


def _identify(kind: str, algorithm: Any) -> tuple[str | None, str]:
    """(the built-in name lower-cased as NNI looks it up, or None for a custom class; the
    block named for messages). v2 spells it `name`/`className`, v1 `builtin<Kind>Name`/
    `className`+`classFileName`+`codeDir`."""
    if not isinstance(algorithm, Mapping):
        raise ConfigError(f"{kind}: expected a mapping (name, classArgs), got {_shown(algorithm)}")
    name = _setting(algorithm, "name", f"builtin{kind.title()}Name")
    if name is not None:
        return str(name[1]).lower(), f"{kind} {name[1]!r}"
    custom = _setting(algorithm, "className", "classFileName", "codeDir", "codeDirectory")
    if custom is not None:
        return None, f"custom {kind} {custom[1]!r}"
    raise ConfigError(
        f"{kind}: expected name (builtin{kind.title()}Name in NNI v1) or className, "
        f"got keys {', '.join(map(str, algorithm))}"
    )


def _check_direction(kind: str, mode: str, metric: str) -> None:
    """NNI's optimize_mode was about the value its trials reported; --metric names trial's."""
    from trial.metrics import METRIC_MODES

    natural = METRIC_MODES.get(metric.partition("/")[2])
    if natural is not None and natural != OPTIMIZE_MODES[mode]:
        warnings.warn(
            f"{kind}.classArgs.optimize_mode: {mode}, "
            f"but {metric} is better {'higher' if natural == 'max' else 'lower'}; "
            "pass the metric NNI's trials reported with --metric",
            stacklevel=2,
        )


def read_nni(paths: Sequence[Path]) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    """NNI's files -> (search space, experiment config or None, what they were, for a header).

    `paths`: a search space, an experiment config, or one of each in either order; each
    file is told by its content. A config alone must name its space (`searchSpaceFile`,
    v1 `searchSpacePath`, relative to the config's folder) or hold it (`searchSpace`).
    """
    spaces: list[tuple[Path, Any]] = []
    experiments: list[tuple[Path, dict[str, Any]]] = []
    for path in paths:
        data = _load(path)
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: expected an NNI search space or experiment config (a mapping), got {_shown(data)}"
            )
        (experiments if _is_experiment(data) else spaces).append((path, data))
    if len(spaces) > 1 or len(experiments) > 1:
        what = "search space" if len(spaces) > 1 else "experiment config"
        raise ConfigError(f"{paths[1]}: a second NNI {what}; give a search space, an experiment config, or one of each")
    experiment_path, experiment = experiments[0] if experiments else (None, None)
    if spaces:
        space_path, space = spaces[0]
        where, source = str(space_path), space_path.name + (f" and {experiment_path.name}" if experiment_path else "")
    else:
        where, space, source = _space_of(experiment_path, experiment)
    if not isinstance(space, dict):
        raise ConfigError(f"{where}: expected a search space (a mapping of searched params), got {_shown(space)}")
    if not space:
        raise ConfigError(f"{where}: the search space is empty; nothing to search")
    return space, experiment, source


def _space_of(path: Path, experiment: Mapping[str, Any]) -> tuple[str, Any, str]:
    """(where errors say it is, the search space, what it was) of an experiment config."""
    inline = _setting(experiment, "searchSpace")
    file = _setting(experiment, "searchSpaceFile", "searchSpacePath")
    if inline is not None and file is not None:
        raise ConfigError(f"{path}: {inline[0]}, {file[0]}: NNI takes one of the two, not both")
    if file is not None:
        if not isinstance(file[1], str):
            raise ConfigError(f"{path}: {file[0]}: expected a path, got {_shown(file[1])}")
        space_path = path.parent / Path(file[1]).expanduser()
        return str(space_path), _load(space_path), f"{path.name} and its {file[0]} {space_path.name}"
    if inline is not None:
        return f"{path}: {inline[0]}", inline[1], f"{path.name} (its {inline[0]})"
    annotation = _setting(experiment, "useAnnotation")
    if annotation is not None and annotation[1]:
        raise ConfigError(
            f"{path}: {annotation[0]}: the search space is NNI annotations in the trial code; "
            "write it out as a search_space.json and pass that first"
        )
    raise ConfigError(
        f"{path}: no search space: expected searchSpaceFile, searchSpacePath or searchSpace; "
        "or pass SEARCH_SPACE_JSON first"
    )


def import_nni(paths: Sequence[Path], out: Path, *, solver: str, dataset: str, metric: str) -> Path:
    """Read NNI's files, write the sweep config to `out`, check it loads, return `out`.

    Warnings are shown only when the config is written: a refused import prints its one
    error line alone, as the warnings describe a config that does not exist.
    """
    from trial.config import load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space, experiment, source = read_nni(paths)
        config = convert_experiment(space, experiment, name=out.stem, solver=solver, dataset=dataset, metric=metric)
        header = (
            f"# Converted from NNI: {source}.\n"
            "# The searched keys must be params of the solver; point data at your own labels CSV\n"
            "# (data.labels) and set the fixed solver params under solver.params.\n"
        )
        partial = out.with_name(f".{out.name}.partial")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(header + yaml.safe_dump(config, sort_keys=False))
        except OSError as error:
            raise ConfigError(f"{out}: cannot write: {error.strerror or first_line(error)}") from None
        try:
            load_config(partial)  # the result must load as it stands, else nothing is written
        except BaseException:
            partial.unlink()
            raise
        partial.replace(out)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return out


def _load(path: Path) -> Any:
    """A file as NNI reads it: JSON, else YAML (a YAML config, or a search space written in YAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {getattr(error, 'strerror', None) or first_line(error)}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_error:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as yaml_error:
            if path.suffix.lower() == ".json":
                raise ConfigError(
                    f"{path}: invalid JSON at line {json_error.lineno}, column {json_error.colno}: {json_error.msg}"
                ) from None
            mark = getattr(yaml_error, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(yaml_error, "problem", None) or first_line(yaml_error)
            raise ConfigError(f"{path}: invalid YAML{at}: {problem}") from None


def _is_experiment(data: Mapping[str, Any]) -> bool:
    """A key only experiment configs have, holding something other than a search space entry."""
    return any(
        _key(key) in EXPERIMENT_KEYS and not (isinstance(value, Mapping) and "_type" in value)
        for key, value in data.items()
    )


def _key(name: Any) -> str:
    """NNI's spelling-blind key: trialConcurrency, trial_concurrency and TrialConcurrency are one."""
    return str(name).lower().replace("_", "")


def _setting(section: Mapping[str, Any], *names: str) -> tuple[str, Any] | None:
    """(the key as written, its value) of the first of `names` the section has, else None."""
    wanted = [_key(name) for name in names]
    found = {_key(key): (str(key), value) for key, value in section.items()}
    return next((found[key] for key in wanted if key in found), None)


def _whole(setting: tuple[str, Any]) -> int:
    key, value = setting
    if not (_is_number(value) and float(value).is_integer() and value >= 1):
        raise ConfigError(f"{key}: expected a whole number >= 1, got {value!r}")
    return int(value)


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _listed(values: Sequence[Any]) -> str:
    return json.dumps(list(values))


def _shown(value: Any) -> str:
    """A received value for a message: its type and a repr cut to one short line."""
    if value is None:
        return "nothing"
    text = repr(value)
    return f"the {type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
