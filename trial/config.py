"""Sweep configuration: YAML + dotted overrides -> one frozen, typed, validated config.

Like nanoGPT's configurator, the config is flat enough to read at a glance and an
unknown key is always an error, never silently ignored. Every error is a
`ConfigError` whose message starts with the key path (`search.space.lr.low: ...`).
The resolved config (defaults filled in, dataset defaults merged, solver params
completed) is what gets logged to MLflow, so a run can be reproduced from it alone.
"""
from __future__ import annotations

import math
import urllib.parse
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence, get_args, get_origin

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from trial.errors import ConfigError, describe_validation_error, first_line
from trial.manifest import HoldoutSplit, KFoldSplit
from trial.nni_space import nni_distribution
from trial.plugins import is_reference, load_augmentation, load_reader, load_solver, solver_names
from trial.runs import OPTUNA_STORE_FILE, STORAGE_DIR, default_tracking_uri, sqlite_database, sqlite_uri, store_folder
from trial.solver import Solver, SolverParams, split_names

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "search_spaces" / "demo.yaml"
# What `debug: true` (`trial run --debug`) shrinks a sweep to.
DEBUG_SUBSAMPLE = 0.05
DEBUG_MAX_EPOCHS = 2
DEBUG_MAX_TRIALS = 2
DEBUG_SUFFIX = "-debug"
SEARCHED_SEED = "seed"
"""A search space key that is no solver param: the trial's root seed."""
"""Appended to a debug sweep's name."""

# Lists in YAML become tuples, so the frozen config is immutable all the way down.
StrTuple = Annotated[tuple[str, ...], Field(strict=False)]


class _Section(BaseModel):
    # strict: a string never turns into a number, 1.0 never into an int.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_SPLIT_TAGS = ("holdout", "kfold")


def _split_kind(value: Any) -> str:
    keys = value if isinstance(value, Mapping) else vars(value)
    return "kfold" if "folds" in keys or "fold" in keys else "holdout"


class DataConfig(_Section):
    dataset: str | None = None
    """Built-in dataset name (demo_ecg, digits, breast_cancer); or give `labels`."""
    dataset_params: dict[str, Any] = Field(default_factory=dict, strict=False)
    """Generator settings of a built-in dataset (e.g. n_recordings for demo_ecg)."""
    root: str | None = None
    """Folder built-in datasets are written to; default ./data."""
    labels: str | None = None
    """A labels CSV; sample files are found relative to its folder."""
    path_column: str | None = "path"
    """Column holding one data file's path per sample; null for tabular data."""
    reader: str | None = None
    """How a data file becomes an array: null reads .npy files; else a function from a
    file path to a numpy array, as 'module:function' or 'path/file.py:function'."""
    features: StrTuple | None = None
    """Tabular feature columns (used when path_column is null)."""
    target: str = "label"
    classes: tuple[str | int, ...] | None = Field(None, strict=False, min_length=2)
    """The target values to expect; any other value in the labels CSV is an error."""
    filter: str | None = None
    """A pandas query over the labels CSV's columns (`DataFrame.query`), e.g. "hos != 'x'
    and age >= 18": only the rows it keeps are checked, split and trained on."""
    stratify: StrTuple | None = None
    """Columns whose joint distribution every split keeps; default [target]."""
    group: str | None = None
    """Rows sharing this column's value (a patient) never span two splits."""
    split: Annotated[
        Annotated[HoldoutSplit, Tag("holdout")] | Annotated[KFoldSplit, Tag("kfold")],
        Discriminator(_split_kind),
    ] = Field(default_factory=HoldoutSplit)
    balance: StrTuple | None = None
    """Sampler strata: every batch holds these columns' joint values evenly."""
    subsample: float | None = Field(None, gt=0, le=1)
    """Train on a fraction of the rows, stratified on the target (a quick set-up check)."""
    on_bad_file: Literal["error", "skip"] = "error"
    allow_outside_root: bool = False
    """Allow sample paths that escape the labels CSV's folder."""

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.dataset is None) == (self.labels is None):
            raise ValueError("give exactly one of data.dataset or data.labels")
        return self

    @field_validator("filter")
    @classmethod
    def _filter_not_blank(cls, value: str | None) -> str | None:
        # A blank query is most likely a value left out by mistake; pandas would refuse it
        # only later, after the labels are read.
        if value is not None and not value.strip():
            raise ValueError(
                f"expected a pandas query over the labels CSV's columns (e.g. \"age >= 18\"), got {value!r}; "
                "leave data.filter out to keep every row"
            )
        return value


class SolverConfig(_Section):
    name: str
    """A built-in solver (ecg_cnn1d, image_cnn, tabular_mlp), one an installed package offers,
    or the team's own: 'module.path:ClassName' or 'path/to/file.py:ClassName'."""
    params: Any = Field(default_factory=dict)
    """As written: a mapping; once resolved: the solver's own Params, every value typed
    and defaults included."""

    @property
    def cls(self) -> type[Solver]:
        """The solver class `name` names (imported once; later calls reuse the module)."""
        return load_solver(self.name)


class SchedulerConfig(_Section):
    type: Literal["asha", "none"] = "none"
    grace_period: int = Field(1, ge=1)
    """ASHA: epochs every trial runs before it can be pruned."""
    reduction_factor: float = Field(2.0, gt=1)


class Distribution(_Section):
    """One searched parameter, in trial's form or NNI's (`_type`/`_value`)."""

    type: Literal["uniform", "loguniform", "int", "choice"]
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0)
    log: bool = False
    values: tuple[Any, ...] | None = Field(None, strict=False)

    @model_validator(mode="after")
    def _check_bounds(self) -> Distribution:
        if self.type == "choice":
            if not self.values:
                raise ValueError("choice needs a non-empty `values` list")
            refused = [v for v in self.values if v is not None and not isinstance(v, (bool, int, float, str))]
            if refused:
                raise ValueError(f"choice values must be numbers, text, true/false or null, got {refused[0]!r}")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs `low` and `high`")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low >= self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        if (self.type == "loguniform" or self.log) and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0, got low={self.low}")
        if self.type == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"int bounds must be whole numbers, got low={self.low}, high={self.high}")
        # Whatever else Optuna would refuse (a step on a log scale, ...) fails here, not in the searcher.
        try:
            self.to_optuna()
        except ValueError as error:
            raise ValueError(f"Optuna refuses this range: {first_line(error)}") from None
        return self

    @property
    def extremes(self) -> list[Any]:
        """The values at the edges of the range (every value of a choice): where a searched
        value most likely breaks a model or a batch."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]

    def capped(self, cap: int) -> Distribution:
        """This range of whole numbers (an int range, or a choice of ints) with nothing above `cap`."""
        if self.type == "choice":
            return Distribution(type="choice", values=tuple(sorted({min(int(value), cap) for value in self.values})))
        low = min(int(self.low), cap)
        if low >= cap:
            return Distribution(type="choice", values=(cap,))
        return self.model_copy(update={"low": float(low), "high": float(min(self.high, cap))})

    @property
    def is_log(self) -> bool:
        return self.type == "loguniform" or self.log

    def to_optuna(self) -> optuna.distributions.BaseDistribution:
        if self.type == "choice":
            return optuna.distributions.CategoricalDistribution(list(self.values))
        if self.type == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.is_log, step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.is_log, step=self.step)


class SearchConfig(_Section):
    metric: str = "valid/loss"
    """What Tune optimises: valid/<metric> (loss, accuracy, f1_macro, auroc, ece)."""
    mode: Literal["min", "max"] | None = None
    """Default: the metric's natural direction."""
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    algo: Literal["tpe", "random"] = "tpe"
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    space: dict[str, Distribution] = Field(default_factory=dict, strict=False)
    """Solver params to search, and `seed` (the trial's root seed) if it should be searched too."""
    cv: bool = False
    """Each trial trains every fold of the k-fold split (data.split: {folds: K}) and reports
    the mean over folds; the best trial's fold models are the sweep's ensemble."""
    repeats: int = Field(1, ge=1)
    """Each trial trains its config with this many seeds (the root seed and derived ones)
    and reports the mean; the best trial's seed models are the sweep's ensemble."""

    @property
    def ensemble(self) -> bool:
        """Whether each trial trains several models (folds, seeds) and reports their mean."""
        return self.cv or self.repeats > 1


class ScalingConfig(_Section):
    num_workers: int = Field(1, ge=1)
    """1: the solver runs inside the trial's process; >= 2: a TorchTrainer worker group."""
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, ge=1)
    """Also the torch thread count of each worker, so trials don't oversubscribe cores."""
    max_failures: int = Field(2, ge=0)


class TrackingConfig(_Section):
    uri: str | None = None
    """MLflow tracking URI; null: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    experiment: str | None = None
    """MLflow experiment; default: the sweep's name."""
    register_as: str | None = None
    """Also register the sweep's model in MLflow's Model Registry under this name: one new
    version per sweep."""

    @field_validator("register_as")
    @classmethod
    def _registry_name(cls, name: str | None) -> str | None:
        # MLflow's own rules for a registered model's name, said before the sweep, not after it.
        if name is not None and (not name.strip() or "/" in name or ":" in name or ".." in name):
            raise ValueError(f"{name!r} is not a Model Registry name: it needs a character other than spaces, and no '/', ':' or '..'")
        return name


class SweepConfig(_Section):
    name: str = Field(min_length=1)
    """The sweep's folder in Tune's storage, its MLflow run name and default experiment."""
    seed: int = Field(42, ge=0, lt=2**32)
    data: DataConfig
    solver: SolverConfig
    search: SearchConfig = Field(default_factory=SearchConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    debug: bool = False
    """A set-up check: every row and file checked as the full run checks them, then a
    stratified 5% of the data (data.subsample) trained for at most 2 epochs in 2 trials;
    the sweep is named `<name>-debug` and every run is tagged `debug`."""
    storage: str | None = None
    """Tune storage (checkpoints, experiment state) and the data cache; default:
    a `trial_runs` folder beside the MLflow sqlite store (or the working directory)."""

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        # Tune keeps the sweep in storage/<name>: a separator would nest it, '..' escape it.
        if name in (".", "..") or any(sep in name for sep in ("/", "\\", "\0")):
            raise ValueError(f"{name!r} names the sweep's folder in Tune's storage; use no '/', '\\' or '..'")
        return name

    # -- derived values, one place each ----------------------------------------

    @property
    def tracking_uri(self) -> str:
        return self.tracking.uri or default_tracking_uri()

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def storage_path(self) -> Path:
        if self.storage:
            return Path(self.storage).expanduser().resolve()
        return store_folder(self.tracking_uri) / STORAGE_DIR

    @property
    def optuna_storage_url(self) -> str:
        """The sweep's Optuna study lives beside a sqlite MLflow store, for optuna-dashboard;
        with any other store, in the sweep's storage."""
        uri = self.tracking_uri
        folder = store_folder(uri) if sqlite_database(uri) is not None else self.storage_path
        return sqlite_uri(folder / OPTUNA_STORE_FILE)

    @property
    def metric_mode(self) -> str:
        from trial.metrics import METRIC_MODES

        return self.search.mode or METRIC_MODES[self.search.metric.split("/", 1)[1]]

    def code_references(self) -> list[str]:
        """Every name of code this sweep runs: the solver, the reader, each augmentation
        (searched ones included), for shipping the team's modules to the workers."""
        return [self.solver.name, *([self.data.reader] if self.data.reader else []), *self.augmentation_names()]

    def augmentation_names(self) -> list[str]:
        """Every augmentation a trial may use: the base params' and each searched choice's."""
        return augmentation_names(self.solver.params, self.search.space)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-able data (tuples become lists), as logged:
        credentials in the tracking URI are masked."""
        data = _plain(self.model_dump(mode="python", exclude_none=False))
        if data["tracking"]["uri"]:
            data["tracking"]["uri"] = _mask_credentials(data["tracking"]["uri"])
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat_params(self) -> dict[str, str]:
        """Every resolved value as `section.key` -> text, for MLflow params.

        Solver params go under their own names (`lr`, not `solver.params.lr`), so
        the searched ones line up with Optuna's and Tune's names in the UI.
        """
        flat: dict[str, str] = {}
        config = self.to_dict()
        solver_params = config["solver"].pop("params")
        config["search"].pop("space")  # the space is the parent run's, not a trial's value
        _flatten(config, "", flat)
        for key, value in solver_params.items():
            flat[key] = _text(value)
        return flat


def _mask_credentials(uri: str) -> str:
    """`https://user:secret@host/` -> `https://***@host/`: params and artifacts are readable by all."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}{key}.", out)
    else:
        out[prefix.rstrip(".")] = _text(value)


# -- loading ---------------------------------------------------------------------

def read_yaml(path: Path) -> dict[str, Any]:
    """Read a config file; a missing file or bad YAML is a ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values parse as YAML (so `{type: ...}` works)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. solver.params.epochs=3")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML") from None
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {key}: {where} is a value ({child!r}), not a section")
            node = child
        node[parts[-1]] = value
    return raw


def load_config(path: Path | None = None, overrides: Sequence[str] = ()) -> SweepConfig:
    """Load, override, validate and resolve a sweep config."""
    path = path or DEFAULT_CONFIG
    raw = apply_overrides(read_yaml(path), overrides)
    raw.setdefault("name", path.stem)
    return resolve(raw)


def resolve(raw: dict[str, Any]) -> SweepConfig:
    """Validate raw config data and fill in every default; raises ConfigError."""
    from trial.datasets import dataset_defaults, dataset_kind
    from trial.metrics import METRIC_MODES

    raw = dict(raw)
    data = raw.get("data")
    data_kind = None
    if isinstance(data, dict) and isinstance(data.get("dataset"), str):
        # A built-in dataset brings its column layout; the user's keys win.
        data_kind = dataset_kind(data["dataset"])
        raw["data"] = {**dataset_defaults(data["dataset"]), **data}
    search = raw.get("search")
    if isinstance(search, dict) and isinstance(search.get("space"), dict):
        raw["search"] = {**search, "space": _normalise_space(search["space"])}

    config = _validate(raw)

    solver_cls = config.solver.cls
    if data_kind is not None and data_kind not in solver_cls.data_kinds:
        raise ConfigError(
            f"solver.name: {config.solver.name!r} trains on {' or '.join(solver_cls.data_kinds)} data but dataset "
            f"{config.data.dataset!r} is {data_kind} data; solvers for it: {', '.join(solvers_for(data_kind))}"
        )
    if config.data.reader is not None:
        load_reader(config.data.reader)
    params = solver_cls.parse_params(config.solver.params, name=config.solver.name)
    _check_augmentations(augmentation_names(params, config.search.space), data_kind)
    known = solver_cls.param_names()
    if not config.search.space:
        raise ConfigError(
            "search.space: nothing to search; name one or two solver params, "
            "e.g. lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}"
        )
    for key in config.search.space:
        if key == SEARCHED_SEED:
            continue
        if key not in known:
            raise ConfigError(
                f"search.space.{key}: not a param of solver {config.solver.name!r}; its params: {', '.join(known)}"
            )
    for key, spec in config.search.space.items():
        if key == SEARCHED_SEED:
            _check_searched_seed(spec)
        else:
            _check_space_values(solver_cls, params, key, spec)
    _check_ensemble(config)
    if len(config.search.space) > 2:
        warnings.warn(
            f"search.space searches {len(config.search.space)} params; searching one or two "
            "and fixing the rest usually finds more in the same budget",
            stacklevel=2,
        )
    metric_prefix, _, metric_name = config.search.metric.partition("/")
    if metric_prefix != "valid" or metric_name not in METRIC_MODES:
        allowed = ", ".join(f"valid/{name}" for name in METRIC_MODES)
        raise ConfigError(f"search.metric: {config.search.metric!r} is never reported; reported: {allowed}")

    data_cfg = config.data
    if data_cfg.stratify is None:
        data_cfg = data_cfg.model_copy(update={"stratify": (data_cfg.target,)})
    search = config.search
    naming: dict[str, Any] = {}
    if config.debug:
        data_cfg = data_cfg.model_copy(update={"subsample": data_cfg.subsample or DEBUG_SUBSAMPLE})
        params = params.model_copy(update={"epochs": min(params.epochs, DEBUG_MAX_EPOCHS)})
        debug_search: dict[str, Any] = {"num_samples": min(search.num_samples, DEBUG_MAX_TRIALS)}
        if "epochs" in search.space:  # a searched epochs count is capped like the base one
            debug_search["space"] = {**search.space, "epochs": search.space["epochs"].capped(DEBUG_MAX_EPOCHS)}
        search = search.model_copy(update=debug_search)
        # Its own sweep name (Tune storage, resume record, Optuna study), so a set-up check
        # never resumes, nor is resumed as, the real sweep; its runs stay in the real
        # sweep's MLflow experiment, tagged debug.
        naming = {
            "name": f"{config.name}{DEBUG_SUFFIX}",
            "tracking": config.tracking.model_copy(update={"experiment": config.experiment_name}),
        }
    search = _fit_scheduler_to_epochs(search, max_epochs(search, params.epochs))
    return config.model_copy(
        update={
            "data": data_cfg,
            "search": search,
            "solver": config.solver.model_copy(update={"params": params}),
            **naming,
        }
    )


def augmentation_names(params: SolverParams, space: Mapping[str, Distribution]) -> list[str]:
    """The augmentations of `params` and of each choice of a searched `augment`, once each."""
    names = list(params.augment)
    augment = space.get("augment")
    for choice in augment.values if augment is not None and augment.values else ():
        # Choices that are not text are refused with the other searched values' checks.
        names += split_names(choice) if isinstance(choice, str) else []
    return list(dict.fromkeys(names))


def _check_augmentations(names: list[str], data_kind: str | None) -> None:
    """Each augmentation a sweep may use loads now: the team's own always; a built-in name
    where a built-in dataset tells its data kind (for a labels CSV the kind is known once
    the data is read, and the pre-flight checks it there)."""
    for name in names:
        if is_reference(name) or data_kind is not None:
            load_augmentation(name, data_kind)


def solvers_for(data_kind: str) -> list[str]:
    """The installed solvers (built-ins included) that train on `data_kind` data."""
    fitting = []
    for name in solver_names():
        try:
            if data_kind in load_solver(name).data_kinds:
                fitting.append(name)
        except ConfigError:  # a broken installed plug-in is not one to suggest
            continue
    return sorted(fitting)


def max_epochs(search: SearchConfig, epochs: int) -> int:
    """The most epochs any trial runs: `epochs`, or the top of a searched `epochs` range
    (ASHA's max_t, read from the resolved config: its typed params and its space)."""
    spec = search.space.get("epochs")
    return max(int(value) for value in spec.extremes) if spec is not None else epochs


def _fit_scheduler_to_epochs(search: SearchConfig, longest: int) -> SearchConfig:
    """ASHA refuses a grace period longer than the trials (Ray asserts grace_period <= max_t):
    the intent, no pruning before the last epoch, is clear, so lower it and say so."""
    scheduler = search.scheduler
    if scheduler.type != "asha" or scheduler.grace_period <= longest:
        return search
    warnings.warn(
        f"search.scheduler.grace_period={scheduler.grace_period} lowered to {longest}: trials run at most "
        f"{longest} epochs (solver.params.epochs), and ASHA cannot wait longer than that before pruning",
        stacklevel=2,
    )
    return search.model_copy(update={"scheduler": scheduler.model_copy(update={"grace_period": longest})})


def _check_searched_seed(spec: Distribution) -> None:
    """A searched root seed is a whole number a seed can be."""
    whole = spec.type == "int" or (spec.type == "choice" and all(type(value) is int for value in spec.values))
    if not whole or not all(0 <= int(value) < 2**32 for value in spec.extremes):
        raise ConfigError(
            f"search.space.{SEARCHED_SEED}: the trial's root seed takes whole numbers in [0, 2**32): "
            "an int range or a choice of ints"
        )


def _check_ensemble(config: SweepConfig) -> None:
    """search.cv and search.repeats train several models per trial, each in one process."""
    search, split = config.search, config.data.split
    if search.cv and not split.kfold:
        raise ConfigError(
            "search.cv: trains every fold of a k-fold split, and data.split is a hold-out split; "
            "use e.g. data.split: {folds: 5, test: 0.15}"
        )
    if search.cv and "fold" in split.model_fields_set:
        raise ConfigError(
            f"data.split.fold: with search.cv every fold is trained (0..{split.folds - 1}); drop data.split.fold"
        )
    if search.ensemble and config.scaling.num_workers > 1:
        key = "search.cv" if search.cv else "search.repeats"
        raise ConfigError(
            f"{key}: each fold or seed model trains in one process, and folds train side by side on "
            f"free CPUs; use scaling.num_workers: 1 (got {config.scaling.num_workers})"
        )


def _check_space_values(solver_cls: type[Solver], params: SolverParams, key: str, spec: Distribution) -> None:
    """A searched range whose ends the solver would refuse fails now, not in every trial."""
    for value in spec.extremes:
        try:
            solver_cls.parse_params({**dict(params), key: value})
        except ConfigError as error:
            raise ConfigError(f"search.space.{key}: the value {value!r} would be refused ({error})") from None


def _normalise_space(space: dict[str, Any]) -> dict[str, Any]:
    normalised = {}
    for key, spec in space.items():
        if isinstance(spec, dict) and ("_type" in spec or "_value" in spec):
            spec = nni_distribution(f"search.space.{key}", spec)
        normalised[key] = spec
    return normalised


def _validate(raw: dict[str, Any]) -> SweepConfig:
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error.errors()[0])) from None


def _describe(error: Mapping[str, Any]) -> str:
    """One line for the first validation error: key path, what was received, what is allowed."""
    # pydantic puts the split kind's tag in the path (data.split.holdout.valid); drop it.
    loc = [str(part) for part in error["loc"] if part not in _SPLIT_TAGS]
    if error["type"] == "extra_forbidden":
        if loc[:-1] == ["data", "split"]:
            allowed = "valid, test (hold-out) or folds, fold, test (k-fold)"
        else:
            model = _model_at(loc[:-1])
            allowed = ", ".join(model.model_fields) if model else "nothing"
        return f"{'.'.join(loc)}: unknown key; allowed here: {allowed}"
    return describe_validation_error({**error, "loc": tuple(loc)})


def _model_at(loc: Sequence[str]) -> type[BaseModel] | None:
    """The config section class found at a key path, for listing its allowed keys."""
    model: type[BaseModel] | None = SweepConfig
    parts = iter(loc)
    for part in parts:
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        if get_origin(field.annotation) is dict:
            # A keyed section (search.space): the next part is the user's own key.
            model = _section_in(get_args(field.annotation)[1])
            next(parts, None)
        else:
            model = _section_in(field.annotation)
    return model


def _section_in(annotation: Any) -> type[BaseModel] | None:
    """The first config section class inside an annotation (unwrapping Optional/Annotated/unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _section_in(arg)
        if found is not None:
            return found
    return None
