"""NNI's experiment configs and search space files, read into a sweep config.

Microsoft NNI was archived in 2024; its users keep their `search_space.json` and
`config.yml`. `read_nni` reads NNI's files (a search space, an experiment config of NNI
v1 or v2 naming or holding one, or both), and `convert_experiment` turns them into a
sweep config for search_spaces/; each search space entry goes through
trial/nni_space.py's `nni_distribution`, as NNI-style entries in a sweep config do.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from trial.config import load_config
from trial.errors import ConfigError, first_line
from trial.nni_space import is_number, nni_distribution, shown

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
        raise ConfigError(f"{kind}.classArgs: expected a mapping, got {shown(class_args)}")
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
            if not is_number(eta) or eta <= 1:
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
        raise ConfigError(f"{kind}: expected a mapping (name, classArgs), got {shown(algorithm)}")
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
                f"{path}: expected an NNI search space or experiment config (a mapping), got {shown(data)}"
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
        raise ConfigError(f"{where}: expected a search space (a mapping of searched params), got {shown(space)}")
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
            raise ConfigError(f"{path}: {file[0]}: expected a path, got {shown(file[1])}")
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
    if not (is_number(value) and float(value).is_integer() and value >= 1):
        raise ConfigError(f"{key}: expected a whole number >= 1, got {value!r}")
    return int(value)
