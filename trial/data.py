"""The data a sweep trains on: prepared once by the driver, memory-mapped by every worker.

Driver side, `prepare_data(config)` runs once per sweep:
  built-in dataset or labels CSV -> filecheck (cached verdicts) -> split manifest
  (content-hashed, reused) -> one packed float32 array, row i = manifest row i.
Worker side, `open_split(prepared, split)` memory-maps the packed array, so concurrent
trials and workers share the page cache instead of re-reading thousands of files.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from pandas.errors import UndefinedVariableError

from trial.config import DataConfig, SweepConfig
from trial.datasets import materialize
from trial.errors import ConfigError, DataError, first_line
from trial.filecheck import (
    apply_bad_file_policy,
    check_files,
    check_files_with_reader,
    pack_arrays,
    pack_features,
    resolve_paths,
)
from trial.manifest import Manifest, build_or_load_manifest
from trial.plugins import load_reader
from trial.runs import TARGET_COLUMN, proba_column

DATA_KIND_BY_DIMS = {1: "tabular", 2: "signal", 3: "image"}


@dataclass(frozen=True)
class PreparedData:
    """Everything a worker needs to find its data; small and picklable."""

    manifest_csv: Path
    arrays: Path
    target: str
    classes: tuple
    input_shape: tuple[int, ...]
    balance: tuple[str, ...] | None
    manifest_hash: str
    sample_columns: tuple[str, ...] = ()
    """Kept beside each prediction: the sample's file, its stratify and balance values."""
    features: tuple[str, ...] = ()
    """Tabular data: the feature columns, in the packed array's order."""

    @property
    def data_kind(self) -> str | None:
        """signal, image or tabular by the sample's number of dimensions (None for others):
        which built-in augmentations apply."""
        return DATA_KIND_BY_DIMS.get(len(self.input_shape))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def frame(self) -> pd.DataFrame:
        return pd.read_csv(self.manifest_csv)

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        """Class indices (into `classes`) of each row."""
        index = {value: i for i, value in enumerate(self.classes)}
        return frame[self.target].map(index).to_numpy(np.int64)


@dataclass(frozen=True)
class SplitData:
    """One split's rows: positions into the packed array, their labels and manifest rows."""

    x: np.ndarray  # the whole packed array, memory-mapped
    rows: np.ndarray
    y: np.ndarray
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rows)

    def batches(self, index_batches: Iterator[list[int]] | Sequence[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) tensors for batches of positions within this split."""
        for batch in index_batches:
            positions = np.asarray(batch)
            rows = self.rows[positions]
            yield torch.from_numpy(np.asarray(self.x[rows])), torch.from_numpy(self.y[positions])

    def in_order(self, batch_size: int) -> list[list[int]]:
        """Sequential batches over the whole split, for evaluation."""
        return [list(range(start, min(start + batch_size, len(self)))) for start in range(0, len(self), batch_size)]


def probability_frame(prepared: PreparedData, split: SplitData, proba: np.ndarray) -> pd.DataFrame:
    """One split's predictions (trial/runs.py names the file and columns): manifest row, sample
    columns, true class, a probability per class."""
    frame = pd.DataFrame({"row": split.rows})
    for column in prepared.sample_columns:
        frame[column] = split.frame[column].to_numpy()
    frame[TARGET_COLUMN] = split.frame[prepared.target].to_numpy()
    for index, value in enumerate(prepared.classes):
        frame[proba_column(value)] = proba[:, index]
    return frame


def open_split(prepared: PreparedData, split: str, frame: pd.DataFrame | None = None, *, fold: int | None = None) -> SplitData:
    """One split's rows of the packed array. `fold` (k-fold manifests, search.cv): that fold
    is valid and the other folds train, whichever fold the manifest marks valid."""
    frame = prepared.frame() if frame is None else frame
    return rows_of(prepared, frame, split_mask(frame, split, fold))


def rows_of(prepared: PreparedData, frame: pd.DataFrame, mask: np.ndarray) -> SplitData:
    """The manifest rows `mask` selects, as a SplitData (e.g. the rows an ensemble's folds
    hold out between them)."""
    x = np.load(prepared.arrays, mmap_mode="r")
    rows = np.flatnonzero(mask)
    split_frame = frame.iloc[rows].reset_index(drop=True)
    return SplitData(x=x, rows=rows, y=prepared.labels(split_frame), frame=split_frame)


def split_mask(frame: pd.DataFrame, split: str, fold: int | None = None) -> np.ndarray:
    """Which manifest rows are in `split`: by its `split` column, or with `fold` by its `fold`
    column (test rows have fold -1 and stay test)."""
    if fold is None or split == "test":
        return (frame["split"] == split).to_numpy()
    folds = frame["fold"].to_numpy()
    return folds == fold if split == "valid" else (folds >= 0) & (folds != fold)


def prepare_data(config: SweepConfig) -> PreparedData:
    """Build or reuse the manifest and the packed array for this sweep (driver only).

    With `data.subsample` (debug mode), every row and file is still checked as the full
    run checks them (its manifest and filecheck verdicts are cached for it): the sample
    only decides what is trained on.
    """
    data = config.data
    cache_dir = config.storage_path / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    labels_csv, labels = read_labels(data)
    if data.filter is not None:
        # First: rows it drops are neither checked nor packed, and the subsample and the
        # splits are drawn from the rows it keeps.
        labels = apply_filter(labels, data.filter, target=data.target, classes=data.classes)

    if data.path_column is not None:
        paths = resolve_paths(
            labels, path_column=data.path_column, root=labels_csv.parent, allow_outside_root=data.allow_outside_root
        )
        reader = (data.reader, load_reader(data.reader)) if data.reader else None
        if reader is None:
            verdict = check_files(paths, cache_file=cache_dir / "filecheck.sqlite")
        else:
            verdict = check_files_with_reader(paths, reader[1], reader[0])
        kept = apply_bad_file_policy(labels, verdict, on_bad_file=data.on_bad_file)
        input_shape = tuple(verdict.shape)
        kept_paths = [paths[i] for i in kept.index]
        kept = kept.reset_index(drop=True)
    else:
        kept, kept_paths = labels, []
        features = _feature_columns(labels, data)
        input_shape = (len(features),)

    def manifest_of(rows: pd.DataFrame) -> Manifest:
        return build_or_load_manifest(
            rows,
            target=data.target,
            stratify=list(data.stratify or (data.target,)),
            group=data.group,
            split=data.split,
            seed=config.seed,
            cache_dir=cache_dir,
            row_filter=data.filter,
        )

    def features_of(manifest: Manifest) -> Path:
        return pack_features(manifest.frame, features, out_path=cache_dir / f"features-{manifest.content_hash[:16]}.npy")

    if data.subsample is not None:
        full = manifest_of(kept)  # every row's target, stratify and group values, as the full run checks them
        if data.path_column is None:
            features_of(full)  # every feature value, likewise
        positions = stratified_subsample(kept, data.target, data.subsample, seed=config.seed)
        kept = kept.iloc[positions].reset_index(drop=True)
        kept_paths = [kept_paths[i] for i in positions] if kept_paths else []

    manifest = manifest_of(kept)
    if data.path_column is not None:
        key = _files_key(manifest, kept_paths, data.reader)
        arrays = pack_arrays(kept_paths, out_path=cache_dir / f"arrays-{key}.npy", shape=input_shape, reader=reader)
    else:
        arrays = features_of(manifest)
    classes = tuple(sorted(manifest.frame[data.target].unique().tolist()))
    return PreparedData(
        manifest_csv=manifest.path,
        arrays=arrays,
        target=data.target,
        classes=classes,
        input_shape=input_shape,
        balance=data.balance,
        manifest_hash=manifest.content_hash,
        sample_columns=tuple(dict.fromkeys(c for c in (data.path_column, *data.stratify, *(data.balance or ())) if c)),
        features=tuple(features) if data.path_column is None else (),
    )


# Enough rows of every class for a hold-out or k-fold split of a subsample to work.
MIN_ROWS_PER_CLASS = 20


def stratified_subsample(labels: pd.DataFrame, target: str, fraction: float, *, seed: int) -> np.ndarray:
    """Positions of `fraction` of each target class's rows (at least MIN_ROWS_PER_CLASS), in file order."""
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for _, rows in labels.groupby(target, sort=True).indices.items():
        count = min(len(rows), max(MIN_ROWS_PER_CLASS, round(fraction * len(rows))))
        keep.append(rng.choice(rows, size=count, replace=False))
    return np.sort(np.concatenate(keep))


def read_labels(data: DataConfig) -> tuple[Path, pd.DataFrame]:
    """The labels CSV (a built-in dataset's, written out first) and its rows, before data.filter."""
    path = _labels_csv(data)
    return path, _read_labels(path, data)


# Text in quotes is a value and text in backticks a column name: '@' there is a plain character.
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`""")
# How pandas' UndefinedVariableError names what it could not resolve.
_UNDEFINED = re.compile(r"name '(.*)' is not defined")


def apply_filter(
    labels: pd.DataFrame, query: str, *, target: str, classes: Sequence[str | int] | None
) -> pd.DataFrame:
    """The rows of `labels` that the data.filter `query` keeps, in file order, indexed 0..n-1.

    `query` is read as `DataFrame.query` reads it (backticks around column names with
    spaces), except that a name is a column or an error, never a Python variable. Raises
    ConfigError or DataError naming data.filter when the query does not parse, names an
    unknown column, does not give true/false per row or fails to evaluate, or when it
    keeps no row or no row of a target class (one in the labels or in `classes`).
    """
    if "@" in _QUOTED.sub("", query):
        raise ConfigError(
            f"data.filter: '@' refers to a Python variable and a filter has none; "
            f"write the value in the query, got {query!r}"
        )
    try:
        # Empty scopes: pandas would otherwise resolve a name that is not a column from
        # this module's variables. eval, not query: query would take a non-boolean result
        # (`age + 1`) as row labels to select.
        mask = labels.eval(query, local_dict={}, global_dict={}, target=None)
    except SyntaxError as error:
        raise ConfigError(
            f"data.filter: not a valid pandas query: {query!r} ({error.msg}); "
            "put backticks around column names with spaces: `my column`"
        ) from None
    except UndefinedVariableError as error:
        raise DataError(
            f"data.filter: column {_undefined_name(error, query, labels.columns)!r} not found; "
            f"columns: {', '.join(map(str, labels.columns))}"
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure to evaluate the user's own expression is the query's
        raise DataError(f"data.filter: cannot evaluate {query!r}: {first_line(error)}") from None
    if not (isinstance(mask, pd.Series) and pd.api.types.is_bool_dtype(mask)):
        got = f"{mask.dtype} values" if isinstance(mask, pd.Series) else f"a single {type(mask).__name__}"
        raise DataError(
            f"data.filter: expected true or false per row (a comparison such as \"age >= 18\"), "
            f"got {got} from {query!r}"
        )
    kept = labels[mask.to_numpy()].reset_index(drop=True)
    if kept.empty:
        raise DataError(f"data.filter: keeps none of the {len(labels)} rows, got {query!r}")
    left = set(kept[target].dropna().tolist())
    wanted = dict.fromkeys([*(classes or ()), *labels[target].dropna().drop_duplicates().tolist()])
    gone = [value for value in wanted if value not in left]
    if gone:
        raise DataError(
            f"data.filter: leaves no rows of class {', '.join(map(repr, gone))} ({target}), got {query!r}; "
            "every class of the target needs rows to split and train on"
        )
    return kept


def _undefined_name(error: UndefinedVariableError, query: str, columns: pd.Index) -> str:
    """The column name the query used that pandas could not resolve. pandas names a
    backticked one by a made-up identifier, so that one is found among the backticked names."""
    match = _UNDEFINED.search(str(error))
    name = match.group(1) if match else first_line(error)
    if name in _QUOTED.sub("", query):
        return name
    return next((quoted for quoted in re.findall(r"`([^`]*)`", query) if quoted not in columns), name)


def _labels_csv(data: DataConfig) -> Path:
    if data.dataset is not None:
        root = Path(data.root or "data").expanduser().resolve()
        return materialize(data.dataset, root, params=data.dataset_params)
    path = Path(data.labels).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"data.labels: file not found: {path}")
    return path


def _read_labels(path: Path, data: DataConfig) -> pd.DataFrame:
    try:
        labels = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV ({first_line(error)})") from None
    if data.classes is not None and data.target in labels.columns:
        unexpected = labels.loc[~labels[data.target].isin(data.classes) & labels[data.target].notna(), data.target]
        if len(unexpected):
            raise DataError(
                f"{path}: column {data.target!r} has values not in data.classes {list(data.classes)}: "
                f"{unexpected.tolist()[0]!r} ({len(unexpected)} rows)"
            )
    used = [data.target, *(data.stratify or ()), *(data.balance or ())]
    used += [c for c in (data.group, data.path_column) if c]
    for column in used:
        if column not in labels.columns:
            raise DataError(f"{path}: column {column!r} not found; columns: {', '.join(map(str, labels.columns))}")
    return labels


def _feature_columns(labels: pd.DataFrame, data: DataConfig) -> list[str]:
    if data.features is not None:
        missing = [c for c in data.features if c not in labels.columns]
        if missing:
            raise DataError(f"data.features: column {missing[0]!r} not in the labels CSV")
        return list(data.features)
    # Tabular user data without a feature list: every numeric column not used otherwise.
    used = {data.target, data.group, *(data.stratify or ()), *(data.balance or ())}
    features = [c for c in labels.select_dtypes("number").columns if c not in used]
    if not features:
        raise DataError("data.features: no numeric feature columns found; list them in data.features")
    return features


def _files_key(manifest: Manifest, paths: Sequence[Path], reader: str | None) -> str:
    """Names the packed array after the rows, the reader and the files' identities (size, mtime)."""
    digest = hashlib.sha256(f"{manifest.content_hash}\0{reader or 'npy'}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
