"""`trial predict`: score a labels CSV with a sweep's model; external validation when labelled.

The CSV is read as a sweep reads its labels: paths relative to its folder (none outside it
unless allowed), every file checked (missing, unreadable, non-finite, another shape than
the model's is one line, exit 2) and read by the model's own reader. The target column
is optional: without it the rows are only scored. With it, the metrics overall and per
value of each `by` column (default: the sweep's stratify columns, e.g. per hospital) are
printed and logged on a new MLflow run of role `prediction` in the sweep's experiment.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param

from trial.errors import DataError, first_line
from trial.filecheck import apply_bad_file_policy, check_files, check_files_with_reader, pack_arrays, pack_features, resolve_paths
from trial.metrics import METRIC_NAMES, classification_metrics
from trial.model import Predictor, load_predictor, load_spec_reader
from trial.runs import (
    MODEL_RUN_TAG,
    MODEL_TAG,
    PREDICTED_COLUMN,
    PREDICTION_ARTIFACT,
    PREDICTION_ROLE,
    ROLE_TAG,
    RUN_NAME_TAG,
    store_client,
)

GROUP_METRICS_ARTIFACT = "metrics_by_group.csv"


@dataclass(frozen=True)
class Prediction:
    output: Path
    rows: int
    metrics: pd.DataFrame | None
    """One row per group (`all`, then `<column>=<value>`): n and every metric; None when unlabelled."""
    run_id: str | None
    """The prediction run logged for labelled data."""


def predict_csv(
    model: str,
    labels: Path,
    *,
    tracking_uri: str,
    out: Path | None = None,
    tta: int = 0,
    batch_size: int = 256,
    by: Sequence[str] | None = None,
    allow_outside_root: bool = False,
    seed: int = 0,
) -> Prediction:
    """Score every row of `labels` with MODEL; write the probabilities to `out`."""
    labels = labels.expanduser().resolve()
    frame = _read_csv(labels)
    out = (out or Path(f"{labels.stem}-predictions.csv")).expanduser().resolve()
    with tempfile.TemporaryDirectory(prefix="trial-predict-") as scratch:
        predictor, uri = load_predictor(model, tracking_uri, Path(scratch) / "model")
        spec = predictor.spec
        groups = _group_columns(frame, spec.stratify, spec.target, by)
        y = _targets(frame, spec.target, spec.classes, labels) if spec.target in frame.columns else None
        x = np.load(_packed_inputs(frame, predictor, labels, Path(scratch), allow_outside_root), mmap_mode="r")
        proba = predictor.predict_proba(x, batch_size=batch_size, tta=tta, seed=seed)

    scored = _scored_frame(frame, proba, predictor)
    _write_atomic(scored, out)
    if y is None:
        return Prediction(output=out, rows=len(frame), metrics=None, run_id=None)
    labelled = y >= 0
    table = _metric_table(frame[labelled], y[labelled], proba[labelled], groups)
    run_id = _log_prediction_run(tracking_uri, uri, spec.sweep_run_id, labels, scored, table, tta=tta, batch_size=batch_size)
    return Prediction(output=out, rows=len(frame), metrics=table, run_id=run_id)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"--labels: file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"--labels: {path} is not a readable CSV ({first_line(error)})") from None
    if frame.empty:
        raise DataError(f"--labels: {path} has no rows")
    return frame


def _group_columns(frame: pd.DataFrame, stratify: Sequence[str], target: str, by: Sequence[str] | None) -> list[str]:
    """The columns metrics are broken down by: `by` as given, else the sweep's stratify
    columns other than the target that this CSV has."""
    if by is None:
        return [column for column in stratify if column != target and column in frame.columns]
    for column in by:
        if column not in frame.columns:
            raise DataError(f"--by: column {column!r} not in the labels CSV; columns: {', '.join(map(str, frame.columns))}")
    return list(by)


def _targets(frame: pd.DataFrame, target: str, classes: Sequence, path: Path) -> np.ndarray:
    """Class indices of the target column; -1 where it is empty (those rows are only scored)."""
    index = {str(value): i for i, value in enumerate(classes)}
    values = frame[target]
    known = values.isna() | values.astype(str).isin(index)
    if not known.all():
        first = values[~known].iloc[0]
        first = first.item() if isinstance(first, np.generic) else first  # 7, not np.int64(7)
        raise DataError(
            f"{path}: column {target!r} holds {first!r} ({int((~known).sum())} rows), which the model does not know; "
            f"its classes: {', '.join(map(str, classes))}"
        )
    return np.array([-1 if pd.isna(value) else index[str(value)] for value in values], dtype=np.int64)


def _packed_inputs(frame: pd.DataFrame, predictor: Predictor, labels: Path, scratch: Path, allow_outside_root: bool) -> Path:
    """The CSV's inputs as one float32 .npy, checked as a sweep checks its data."""
    spec = predictor.spec
    if spec.tabular:
        return pack_features(frame, spec.features, out_path=scratch / "features.npy")
    paths = resolve_paths(frame, path_column=spec.path_column, root=labels.parent, allow_outside_root=allow_outside_root)
    reader = load_spec_reader(spec)
    if reader is None:
        verdict = check_files(paths, cache_file=scratch / "filecheck.sqlite")
    else:
        verdict = check_files_with_reader(paths, reader, spec.reader)
    apply_bad_file_policy(frame, verdict, on_bad_file="error")
    if tuple(verdict.shape) != tuple(spec.input_shape):
        raise DataError(
            f"data file {paths[0]}: shape {list(verdict.shape)}, but the model takes {list(spec.input_shape)}"
        )
    return pack_arrays(
        paths, out_path=scratch / "arrays.npy", shape=spec.input_shape, reader=(spec.reader, reader) if reader else None
    )


def _scored_frame(frame: pd.DataFrame, proba: np.ndarray, predictor: Predictor) -> pd.DataFrame:
    """row, the CSV's own columns, a probability per class, the predicted class."""
    scored = pd.DataFrame({"row": np.arange(len(frame))})
    scored = pd.concat([scored, frame.reset_index(drop=True)], axis=1)
    for column, values in zip(predictor.proba_columns, proba.T):
        scored[column] = values
    scored[PREDICTED_COLUMN] = np.asarray(predictor.spec.classes, dtype=object)[proba.argmax(axis=1)]
    return scored


def _write_atomic(frame: pd.DataFrame, out: Path) -> None:
    """Nothing half-written: the file appears whole or not at all."""
    if not out.parent.is_dir():
        raise DataError(f"-o: folder not found: {out.parent}")
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(handle)
    try:
        frame.to_csv(temporary, index=False)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _metric_table(frame: pd.DataFrame, y: np.ndarray, proba: np.ndarray, groups: Sequence[str]) -> pd.DataFrame:
    rows = [{"group": "all", "n": len(y), **classification_metrics(y, proba)}]
    for column in groups:
        values = frame[column].to_numpy()
        for value in pd.unique(values):
            mask = values == value
            rows.append({"group": f"{column}={value}", "n": int(mask.sum()), **classification_metrics(y[mask], proba[mask])})
    return pd.DataFrame(rows, columns=["group", "n", *METRIC_NAMES])


def describe_metrics(table: pd.DataFrame) -> str:
    """The metric table as aligned text; nan where a metric is undefined (one class only)."""
    header = f"{'group':<24} {'n':>6} " + " ".join(f"{name:>9}" for name in METRIC_NAMES)
    lines = [header]
    for _, row in table.iterrows():
        cells = " ".join(f"{row[name]:>9.4f}" if not math.isnan(row[name]) else f"{'nan':>9}" for name in METRIC_NAMES)
        lines.append(f"{str(row['group'])[:24]:<24} {int(row['n']):>6} {cells}")
    return "\n".join(lines)


def metric_key(group: str, metric: str) -> str:
    """`all`, auroc -> `auroc`; `hos=westbrook`, auroc -> `hos/westbrook/auroc` (MLflow allows no '=')."""
    if group == "all":
        return metric
    column, _, value = group.partition("=")
    return "/".join(re.sub(r"[^\w.\- ]", "_", part) for part in (column, value)) + f"/{metric}"


def _log_prediction_run(
    tracking_uri: str, uri: str, sweep_run_id: str, labels: Path, scored: pd.DataFrame, table: pd.DataFrame, *, tta: int, batch_size: int
) -> str:
    """A finished `prediction` run in the sweep's experiment: the metrics, the scored rows."""
    client = store_client(tracking_uri)
    experiment_id = client.get_run(sweep_run_id).info.experiment_id
    name = f"predict-{labels.stem}"
    tags = {ROLE_TAG: PREDICTION_ROLE, MODEL_TAG: uri, MODEL_RUN_TAG: sweep_run_id, RUN_NAME_TAG: name}
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    try:
        params = {"labels": str(labels), "tta": tta, "batch_size": batch_size, "rows": len(scored)}
        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_key(str(row["group"]), name), float(row[name]), now, 0)
            for _, row in table.iterrows()
            for name in METRIC_NAMES
            if not math.isnan(row[name])
        ]
        client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit for metrics
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        with tempfile.TemporaryDirectory(prefix="trial-predict-run-") as folder:
            table.to_csv(Path(folder) / GROUP_METRICS_ARTIFACT, index=False)
            scored.to_csv(Path(folder) / PREDICTION_ARTIFACT, index=False)
            client.log_artifacts(run_id, folder)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
