"""Scoring throughput: `trial predict` and the MLflow pyfunc model against a plain PyTorch loop.

    python benchmarks/predict.py                          # 8,000 demo_ecg recordings, 3 rounds (about 6 minutes on 2 cores)
    python benchmarks/predict.py --rows 300 --repeats 1   # a smoke check of the script
    python benchmarks/predict.py --workdir DIR            # keep (and reuse) the data and the store in DIR

The data are N demo_ecg recordings (3 leads x 1000 samples, one .npy each) and their
labels.csv with the target column dropped (so `trial predict` only scores, logging no
prediction run), plus a 1-row copy of it. The model is ecg_cnn1d with its default params
and random initial weights (throughput does not depend on training), saved with
trial.model.save_model and logged on a run of a sqlite store, as a sweep saves its model.
Three variants score the same CSV with the same weights, each in a fresh Python process
timed from the outside (interpreter start, imports, model loading, reading the data, the
forward passes and writing the probabilities: what a user waits for):
  (a) `python -m trial.cli predict RUN_ID --labels CSV -o OUT --tracking-uri URI`;
  (b) the pyfunc model: mlflow.pyfunc.load_model("runs:/RUN_ID/model"), the CSV's files
      np.load'ed into one float32 array, .predict(x), the probabilities written as CSV;
  (c) the baseline, a plain torch loop: the same ecg_cnn1d model class, load_state_dict
      from the same weights file, the files np.load'ed, batches of 256 under no_grad,
      softmax, the probabilities written as CSV.
Every process gets the same torch thread count (--threads, default 1) through
OMP_NUM_THREADS and MKL_NUM_THREADS (trial predict sets none itself; b and c also call
torch.set_num_threads). After one untimed 1-row run of each variant (bytecode, page
cache), each round runs a(1) a(N) b(1) b(N) c(1) c(N), so the variants interleave.
Their temporary files, and the copy of the model that mlflow.pyfunc.load_model downloads
on every run of b and never removes, go to WORKDIR/tmp (TMPDIR).

Start-up is the wall time of the 1-row run (process start to its one prediction written);
throughput is (N - 1) / (median T_N - median T_1) rows per second, i.e. the start-up
excluded. Printed per variant: medians and spreads (max - min) of both times, rows/s,
then the ratios of rows/s against (c) (target, issue: a/c and b/c >= 0.9) and each
start-up. The N-row probabilities of a, b and c are compared (max abs difference, which
should be below 1e-5): the three compute the same thing. Last, the scoring alone is timed
in this process on one in-memory array of every recording (trial's Predictor, the pyfunc
model, the plain loop, interleaved): the same ratio without the start-up to subtract,
whose run-to-run spread (seconds) is of the order of the scoring time at a few thousand
rows. Nothing here asserts a target.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    # Run as a script, Python puts benchmarks/ first on sys.path: put the project root there.
    sys.path[0] = str(PROJECT_ROOT)

import numpy as np
import pandas as pd
import torch

from benchmarks.data import demo_ecg_config
from trial.datasets import materialize
from trial.model import ModelSpec, reference, save_model
from trial.runs import MODEL_DIR, store_client

# As trial's CLI: no MLflow INFO lines (store set-up, signature check) or progress bars here.
logging.getLogger("mlflow").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

RATIO_TARGET = 0.9
"""rows/s of (a) and of (b) over rows/s of (c), start-up excluded."""
MIN_REPEATS = 3
VARIANTS = {"a": "trial predict", "b": "pyfunc model", "c": "plain torch loop"}

# (b) and (c) read the CSV's recordings into one float32 array x, as a user would.
READ_RECORDINGS = """
frame = pd.read_csv(labels)
root = os.path.dirname(labels)
paths = [os.path.join(root, p) for p in frame["path"]]
first = np.load(paths[0])
x = np.empty((len(paths), *first.shape), np.float32)
for i, path in enumerate(paths):
    x[i] = np.load(path)
"""

# (b): what a user writes to score arrays with the MLflow model. argv: CSV OUT MODEL_URI
PYFUNC_SCRIPT = """
import os, sys
import numpy as np, pandas as pd, torch
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
import mlflow
labels, out, uri = sys.argv[1:4]
model = mlflow.pyfunc.load_model(uri)
""" + READ_RECORDINGS + """
model.predict(x).to_csv(out, index=False)
"""

# (c): the plain PyTorch loop. argv: CSV OUT WEIGHTS PARAMS_JSON COLUMNS_JSON BATCH_SIZE
TORCH_SCRIPT = """
import json, os, sys
import numpy as np, pandas as pd, torch
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
from solvers.ecg_cnn1d import ECGCNN1d
labels, out, weights, params, columns, batch_size = sys.argv[1:7]
columns, batch_size = json.loads(columns), int(batch_size)
""" + READ_RECORDINGS + """
model = ECGCNN1d(ECGCNN1d.parse_params(json.loads(params))).build_model(first.shape, len(columns))
model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
model.eval()
chunks = []
with torch.no_grad():
    for start in range(0, len(x), batch_size):
        chunks.append(torch.softmax(model(torch.from_numpy(x[start : start + batch_size])), dim=1))
pd.DataFrame(torch.cat(chunks).numpy(), columns=columns).to_csv(out, index=False)
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000, help="recordings to score (default 8000)")
    parser.add_argument(
        "--repeats", type=int, default=MIN_REPEATS, help=f"timed runs of each variant and size (default {MIN_REPEATS}; 1 for a smoke run)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every variant (default 1)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per forward pass in a and c (default 256)")
    parser.add_argument("--workdir", type=Path, default=None, help="data, store and outputs (default: a new temporary folder, removed)")
    args = parser.parse_args(argv)
    if args.rows < 2 or args.repeats < 1 or args.threads < 1 or args.batch_size < 1:
        parser.error("--rows must be >= 2, --repeats, --threads and --batch-size >= 1")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.workdir.resolve(), args)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-predict-") as folder:
            run(Path(folder), args)


def run(workdir: Path, args: argparse.Namespace) -> None:
    n = args.rows
    config = demo_ecg_config(workdir, n, "bench-predict")
    labels = materialize(config.data.dataset, config.data.root, params=config.data.dataset_params)
    frame = pd.read_csv(labels)
    # Beside labels.csv: trial predict resolves the paths against the CSV's folder.
    unlabelled = labels.with_name("unlabelled.csv")
    one_row = labels.with_name("one-row.csv")
    frame.drop(columns=[config.data.target]).to_csv(unlabelled, index=False)
    frame.drop(columns=[config.data.target]).head(1).to_csv(one_row, index=False)
    input_shape = tuple(np.load(labels.parent / frame[config.data.path_column].iloc[0]).shape)
    classes = tuple(sorted(frame[config.data.target].unique().tolist()))

    run_id, weights = log_model(workdir, config, input_shape, classes)
    columns = [f"proba_{value}" for value in classes]
    outputs = workdir / "out"
    outputs.mkdir(exist_ok=True)
    scratch = workdir / "tmp"  # the variants' temporary files, and the model copies MLflow downloads and leaves
    scratch.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "MLFLOW_TRACKING_URI": config.tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # as trial's CLI sets it
        "TMPDIR": str(scratch),
    }
    params = json.dumps(config.solver.params.model_dump(mode="json"))

    def command(variant: str, csv: Path, out: Path) -> list[str]:
        if variant == "a":
            return [sys.executable, "-m", "trial.cli", "predict", run_id, "--labels", str(csv), "-o", str(out),
                    "--tracking-uri", config.tracking_uri, "--batch-size", str(args.batch_size)]
        if variant == "b":
            return [sys.executable, "-c", PYFUNC_SCRIPT, str(csv), str(out), f"runs:/{run_id}/{MODEL_DIR}"]
        return [sys.executable, "-c", TORCH_SCRIPT, str(csv), str(out), str(weights), params, json.dumps(columns),
                str(args.batch_size)]

    def timed(variant: str, csv: Path, tag: str) -> float:
        out = outputs / f"{variant}-{tag}.csv"
        out.unlink(missing_ok=True)
        start = time.perf_counter()
        done = subprocess.run(command(variant, csv, out), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"variant {variant} ({VARIANTS[variant]}) on {csv.name} failed, exit {done.returncode}:\n"
                               f"{done.stderr[-3000:]}")
        return seconds

    sizes = {"1": one_row, "N": unlabelled}
    for variant in VARIANTS:
        timed(variant, one_row, "warmup")  # untimed: bytecode compiled, libraries in the page cache
    times: dict[tuple[str, str], list[float]] = {(v, s): [] for v in VARIANTS for s in sizes}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            for size, csv in sizes.items():
                times[variant, size].append(timed(variant, csv, size))

    report(times, n, args, outputs, columns)
    report_in_process(labels, workdir, run_id, weights, config, args)


def log_model(workdir: Path, config, input_shape: tuple[int, ...], classes: tuple) -> tuple[str, Path]:
    """ecg_cnn1d with default params and random weights as a sweep's MLflow model, logged on
    a new run of the sqlite store (as tests/unit/test_predict.py's `store` fixture does);
    its run id and the logged weights file."""
    solver = config.solver.cls(config.solver.params)
    torch.manual_seed(0)
    weights = solver.build_model(input_shape, len(classes)).state_dict()
    client = store_client(config.tracking_uri)
    experiment = client.get_experiment_by_name(config.name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(config.name, artifact_location=(workdir / "mlruns").as_uri())
    )
    run_id = client.create_run(experiment_id).info.run_id
    spec = ModelSpec(
        solver=reference(config.solver.cls),
        params=config.solver.params.model_dump(mode="json"),
        input_shape=input_shape,
        classes=classes,
        target=config.data.target,
        path_column=config.data.path_column,
        reader=None,
        features=(),
        stratify=tuple(config.data.stratify),
        members=(),
        sweep_run_id=run_id,
    )
    with tempfile.TemporaryDirectory(prefix="bench-predict-model-") as directory:
        path = save_model(Path(directory), spec, [weights], example=np.zeros((1, *input_shape), np.float32))
        client.log_artifacts(run_id, str(path), MODEL_DIR)
    client.set_terminated(run_id)
    artifacts = Path(unquote(urlparse(client.get_run(run_id).info.artifact_uri).path))
    return run_id, next(artifacts.rglob("member-0.pt"))


def report(times: dict[tuple[str, str], list[float]], n: int, args: argparse.Namespace, outputs: Path, columns: list[str]) -> None:
    print(f"scoring {n:,} demo_ecg recordings (3 x 1000 float32) with ecg_cnn1d, {args.threads} torch thread(s), "
          f"batch {args.batch_size}, {args.repeats} round(s), each run a fresh process")
    if args.repeats < MIN_REPEATS:
        print(f"note: {args.repeats} round(s) is a smoke run; real figures need --repeats {MIN_REPEATS} or more")
    median = {key: statistics.median(samples) for key, samples in times.items()}
    rate = {}
    for variant in VARIANTS:
        extra = median[variant, "N"] - median[variant, "1"]
        rate[variant] = (n - 1) / extra if extra > 0 else float("nan")
    header = f"{'variant':<22}{'start-up s':>11}{'spread':>8}{'T_N s':>10}{'spread':>8}{'rows/s':>10}   samples T_1 | T_N"
    print(header)
    for variant, name in VARIANTS.items():
        one, big = times[variant, "1"], times[variant, "N"]
        print(
            f"{variant}) {name:<19}{median[variant, '1']:>11.3f}{max(one) - min(one):>8.3f}"
            f"{median[variant, 'N']:>10.3f}{max(big) - min(big):>8.3f}"
            f"{'n/a' if math.isnan(rate[variant]) else f'{rate[variant]:.0f}':>10}   "
            + " ".join(f"{s:.2f}" for s in one) + " | " + " ".join(f"{s:.2f}" for s in big)
        )
    for variant in ("a", "b"):
        ratio = rate[variant] / rate["c"]
        what = f"rows/s {variant}/c ({VARIANTS[variant]} / plain torch loop, start-up excluded)"
        if math.isnan(ratio):
            print(f"{what}: n/a, a median T_N not above its median T_1: too few --rows to see past the start-up's noise")
        else:
            print(f"{what}: {ratio:.3f} (target >= {RATIO_TARGET}), {'met' if ratio >= RATIO_TARGET else 'missed'}")
    print("start-up (process to first prediction, medians): "
          + ", ".join(f"{v}) {median[v, '1']:.2f} s" for v in VARIANTS)
          + "; " + ", ".join(f"{v} - c {median[v, '1'] - median['c', '1']:+.2f} s" for v in ("a", "b")))

    proba = {variant: pd.read_csv(outputs / f"{variant}-N.csv")[columns].to_numpy(np.float64) for variant in VARIANTS}
    rows = {variant: len(values) for variant, values in proba.items()}
    if set(rows.values()) != {n}:
        print(f"outputs: row counts differ from {n}: {rows}")
        return
    print("outputs agree (max abs difference of the probabilities, should be < 1e-5): "
          + ", ".join(f"{x}-{y} {np.abs(proba[x] - proba[y]).max():.2e}" for x, y in (("a", "c"), ("b", "c"), ("a", "b"))))


def report_in_process(labels: Path, workdir: Path, run_id: str, weights: Path, config, args: argparse.Namespace) -> None:
    """The scoring alone, in this process, on one in-memory array of every recording: trial's
    Predictor (what `trial predict` runs once its inputs are packed), the pyfunc model and
    the plain loop, interleaved; no start-up or file reading to subtract, so no start-up noise."""
    import mlflow

    from trial.model import Predictor

    torch.set_num_threads(args.threads)
    frame = pd.read_csv(labels)
    x = np.stack([np.load(labels.parent / path) for path in frame[config.data.path_column]]).astype(np.float32)
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{MODEL_DIR}", dst_path=str(workdir / "in-process"), tracking_uri=config.tracking_uri))
    predictor = Predictor.load(local / "artifacts" / "trial")
    pyfunc = mlflow.pyfunc.load_model(str(local))
    model = config.solver.cls(config.solver.params).build_model(x.shape[1:], 2)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()

    def plain() -> None:
        with torch.no_grad():
            torch.cat([torch.softmax(model(torch.from_numpy(x[start : start + args.batch_size])), dim=1)
                       for start in range(0, len(x), args.batch_size)])

    variants = {
        "a": lambda: predictor.predict_proba(x, batch_size=args.batch_size),
        "b": lambda: pyfunc.predict(x),
        "c": plain,
    }
    seconds: dict[str, list[float]] = {variant: [] for variant in variants}
    for _ in range(args.repeats):
        for variant, score in variants.items():
            start = time.perf_counter()
            score()
            seconds[variant].append(time.perf_counter() - start)
    median = {variant: statistics.median(samples) for variant, samples in seconds.items()}
    print(f"scoring alone, in one process, {len(x):,} rows in memory ({args.repeats} interleaved rounds):")
    names = {"a": "trial's Predictor", "b": "pyfunc model", "c": "plain torch loop"}
    for variant, samples in seconds.items():
        print(f"{variant}) {names[variant]:<19} median {median[variant]:.3f} s  spread {max(samples) - min(samples):.3f} s  "
              f"{len(x) / median[variant]:.0f} rows/s")
    for variant in ("a", "b"):
        ratio = median["c"] / median[variant]
        print(f"rows/s {variant}/c in process: {ratio:.3f} (target >= {RATIO_TARGET}), {'met' if ratio >= RATIO_TARGET else 'missed'}")


if __name__ == "__main__":
    main()
