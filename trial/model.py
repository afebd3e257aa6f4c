"""The sweep's model, out of the sweep: an MLflow pyfunc model, registered, loaded back.

`save_model` writes the best trial's best-epoch weights with everything that scoring raw
inputs needs (the solver and its params, the reader, the input shape, the class names in
order, the feature columns of tabular data) as an MLflow model, which the sweep logs on
its parent run under `model/` and may register (`register_model`). `load_predictor`
reads any of `<parent run id>`, `runs:/ID/model`, `models:/NAME/VERSION` and
`models:/NAME@alias` back. `mlflow.pyfunc.load_model` and `mlflow models serve` run
`TrialPyfunc`, which wraps the same `Predictor` that `trial predict` scores with: the REST
answer and `trial predict` are one computation.

The model takes what the data's reader returns: float32 arrays [N, *input_shape] for
file data (signals, images), the feature columns for tabular data. trial normalises
nothing itself; a solver that wants normalised inputs does it inside its model
(tabular_mlp's input standardisation), so the weights carry it. It returns one
probability column per class, `proba_<class>`, in the classes' order.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema, TensorSpec

from trial.data import DATA_KIND_BY_DIMS
from trial.errors import ConfigError, first_line
from trial.loop import predict_proba
from trial.plugins import load_augmentation, load_reader, load_solver
from trial.runs import MODEL_DIR, SWEEP_RUN_TAG, proba_column, store_client
from trial.solver import Solver

SPEC_FILE = "trial-model.json"
PACKAGE_ARTIFACT = "trial"
"""The MLflow model's artifact (a folder) holding SPEC_FILE and the members' weights."""
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ModelSpec:
    """What scoring needs besides the weights; stored as JSON beside them."""

    solver: str
    """`module:Class`, importable where the model loads (the team's modules travel in the
    MLflow model's code/ folder)."""
    params: dict[str, Any]
    input_shape: tuple[int, ...]
    classes: tuple[Any, ...]
    target: str
    path_column: str | None
    reader: str | None
    """`module:function` reading one data file; None reads .npy files."""
    features: tuple[str, ...]
    """Tabular data: the input columns, in order."""
    stratify: tuple[str, ...]
    """The sweep's stratify columns: `trial predict` reports metrics per value of each."""
    members: tuple[str, ...]
    """The weights files, one per model whose probabilities are averaged."""
    sweep_run_id: str

    @property
    def tabular(self) -> bool:
        return self.path_column is None

    @classmethod
    def read(cls, path: Path) -> ModelSpec:
        raw = json.loads(path.read_text())
        for key in ("input_shape", "classes", "features", "stratify", "members"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def reference(obj: Any) -> str:
    """`module:Name` of a class or function: how a saved model names code it imports."""
    return f"{obj.__module__}:{obj.__qualname__}"


class Predictor:
    """A sweep's trained model(s) on CPU, scoring arrays as training saw them."""

    def __init__(self, spec: ModelSpec, members: Sequence[Mapping[str, torch.Tensor]]) -> None:
        self.spec = spec
        solver_cls = load_solver(spec.solver, key="model solver")
        self.solver: Solver = solver_cls(solver_cls.parse_params(spec.params, where="model solver params"))
        self.models = []
        for weights in members:
            model = self.solver.build_model(spec.input_shape, len(spec.classes))
            model.load_state_dict(weights)
            self.models.append(model.eval())

    @classmethod
    def load(cls, folder: Path) -> Predictor:
        """From a folder holding SPEC_FILE and the members' weights files."""
        spec = ModelSpec.read(folder / SPEC_FILE)
        members = [torch.load(folder / name, map_location="cpu", weights_only=True) for name in spec.members]
        return cls(spec, members)

    @property
    def proba_columns(self) -> list[str]:
        return [proba_column(value) for value in self.spec.classes]

    def inputs(self, frame: pd.DataFrame) -> np.ndarray:
        """A tabular model's input array from a frame holding its feature columns."""
        missing = [column for column in self.spec.features if column not in frame.columns]
        if missing:
            raise ConfigError(f"input: feature column {missing[0]!r} missing; the model takes {', '.join(self.spec.features)}")
        return frame[list(self.spec.features)].to_numpy(np.float32)

    def predict_proba(self, x: np.ndarray, *, batch_size: int = 256, tta: int = 0, seed: int = 0) -> np.ndarray:
        """Class probabilities [N, classes], the mean over members; with `tta` > 0, each
        member's mean over `tta` passes through the solver's own augmentations, drawn from
        a generator seeded with `seed` (the same rows and batch size give the same answer)."""
        shape = tuple(self.spec.input_shape)
        if tuple(x.shape[1:]) != shape:
            raise ConfigError(f"input: samples of shape {list(x.shape[1:])}; the model takes {list(shape)}")
        augmentations = []
        if tta:
            names = self.solver.params.augment
            if not names:
                raise ConfigError("--tta: the model's solver was trained without augmentations (solver.params.augment is empty)")
            data_kind = DATA_KIND_BY_DIMS.get(len(shape))
            augmentations = [load_augmentation(name, data_kind) for name in names]
        total = np.zeros((len(x), len(self.spec.classes)))
        for model in self.models:
            if not tta:
                total += predict_proba(model, _batches(x, batch_size), "cpu")
                continue
            rng = torch.Generator().manual_seed(seed)
            for _ in range(tta):
                total += predict_proba(model, _augmented(_batches(x, batch_size), augmentations, rng), "cpu") / tta
        return total / len(self.models)


def _batches(x: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(x), batch_size):
        yield torch.from_numpy(np.array(x[start : start + batch_size], dtype=np.float32))  # a copy: x may be a read-only memory map


def _augmented(batches: Iterator[torch.Tensor], augmentations: list, rng: torch.Generator) -> Iterator[torch.Tensor]:
    for batch in batches:
        for augmentation in augmentations:
            batch = augmentation(batch, rng)
        yield batch


class TrialPyfunc(PythonModel):
    """The MLflow face of a Predictor: arrays (or a tabular model's feature columns) in,
    a DataFrame of class probabilities out."""

    def load_context(self, context: Any) -> None:
        self.predictor = Predictor.load(Path(context.artifacts[PACKAGE_ARTIFACT]))

    # MLflow reads the input's type hint as a schema of its own; np.ndarray is one it leaves
    # to the signature. A tabular model receives a DataFrame of its feature columns.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> pd.DataFrame:
        predictor = self.predictor
        # MLflow has checked the input against the signature: columns for a tabular model, else an array.
        x = predictor.inputs(model_input) if predictor.spec.tabular else np.asarray(model_input, dtype=np.float32)
        return pd.DataFrame(predictor.predict_proba(x), columns=predictor.proba_columns)


# -- writing -----------------------------------------------------------------------------------


def save_model(
    directory: Path,
    spec: ModelSpec,
    members: Sequence[Mapping[str, torch.Tensor]],
    *,
    example: np.ndarray | pd.DataFrame,
    code_paths: Sequence[str] = (),
) -> Path:
    """Write the MLflow model into `directory/model` and return that folder; `spec.members`
    is set here, to the weights files written for `members`."""
    package = directory / PACKAGE_ARTIFACT
    package.mkdir(parents=True)
    names = tuple(f"member-{index}.pt" for index in range(len(members)))
    for name, weights in zip(names, members):
        torch.save(dict(weights), package / name)
    spec = ModelSpec(**{**asdict(spec), "members": names})
    (package / SPEC_FILE).write_text(json.dumps(asdict(spec), indent=1))
    outputs = Schema([ColSpec("double", proba_column(value)) for value in spec.classes])
    if spec.tabular:
        inputs = Schema([ColSpec("double", column) for column in spec.features])
    else:
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *spec.input_shape))])
    path = directory / MODEL_DIR
    mlflow.pyfunc.save_model(
        path,
        python_model=str(Path(__file__).with_name("mlflow_model.py")),
        artifacts={PACKAGE_ARTIFACT: str(package)},
        signature=ModelSignature(inputs=inputs, outputs=outputs),
        input_example=example,
        code_paths=list(code_paths) or None,
        # Written out rather than inferred: inferring loads the model in a subprocess.
        pip_requirements=_requirements(),
    )
    return path


def _requirements() -> list[str]:
    import pydantic

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"pydantic=={pydantic.__version__}",
    ]


def register_model(client: MlflowClient, name: str, run_id: str, tags: Mapping[str, str]) -> str:
    """A new version of registered model `name` (created if new) from the run's `model/`;
    returns the version."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_DIR}"
    version = client.create_model_version(name, source, run_id=run_id, tags={SWEEP_RUN_TAG: run_id, **tags})
    return str(version.version)


def check_registry(client: MlflowClient, name: str) -> None:
    """Fail before the sweep when the store has no Model Registry to register into."""
    try:
        client.search_registered_models(max_results=1)
    except MlflowException as error:
        raise ConfigError(f"tracking.register_as: {name!r}: the store has no usable Model Registry: {first_line(error)}") from None


# -- reading -----------------------------------------------------------------------------------


def model_uri(model: str) -> str:
    """MODEL as an MLflow URI: a parent run id is its `runs:/ID/model`."""
    if _RUN_ID.match(model):
        return f"runs:/{model}/{MODEL_DIR}"
    if model.startswith(("runs:/", "models:/")):
        return model
    raise ConfigError(
        f"MODEL: expected a sweep's parent run id, runs:/ID/model, models:/NAME/VERSION or models:/NAME@alias, got {model!r}"
    )


def load_predictor(model: str, tracking_uri: str, folder: Path) -> tuple[Predictor, str]:
    """The Predictor of MODEL in the store at `tracking_uri`, and MODEL's URI. The model's
    files are copied into `folder`, which must outlive the Predictor: a team's modules are
    imported from the model's code/ there, some only when first used (its augmentations)."""
    uri = model_uri(model)
    try:
        local = Path(_download(uri, tracking_uri, folder))
    except (MlflowException, OSError) as error:
        raise ConfigError(f"MODEL: no model at {uri} in {tracking_uri}: {first_line(error)}") from None
    if not (local / "MLmodel").is_file():
        raise ConfigError(f"MODEL: {uri} in {tracking_uri} holds no MLflow model (no MLmodel file)")
    python_model = mlflow.pyfunc.load_model(str(local)).unwrap_python_model()
    if not isinstance(python_model, TrialPyfunc):
        raise ConfigError(f"MODEL: {uri} is not a model trial saved")
    return python_model.predictor, uri


def _download(uri: str, tracking_uri: str, folder: Path) -> str:
    """A local copy of a runs:/ or models:/ URI's files, from the store at `tracking_uri`.

    Resolved here rather than by MLflow's URI handling, which looks registry names up in the
    process's global registry URI whatever store it is given.
    """
    folder.mkdir(parents=True, exist_ok=True)
    client = store_client(tracking_uri)
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        return client.download_artifacts(run_id, path, str(folder))
    name, alias_sep, rest = uri.removeprefix("models:/").partition("@")
    if alias_sep:
        version = client.get_model_version_by_alias(name, rest).version
    else:
        name, _, version = name.partition("/")
    source = client.get_model_version_download_uri(name, str(version))
    return mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking_uri, dst_path=str(folder))


def load_spec_reader(spec: ModelSpec) -> Any:
    """The model's reader function, or None for .npy files."""
    return load_reader(spec.reader, key="model reader") if spec.reader else None
