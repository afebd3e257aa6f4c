"""Issue 3's data-path targets: sampler throughput, cached filecheck, packed-cache loading.

    python benchmarks/data.py            # the full sizes of the targets (about a minute on 2 cores)
    python benchmarks/data.py --quick    # small sizes: a smoke check of the script

One line per figure. Every time is the best of a few repeats and every ratio compares
two times taken in this run, so that a busy machine moves the figures less than the
raw seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

if __name__ == "__main__":
    # Run as a script, Python puts benchmarks/ first on sys.path: put the project root there.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np
import torch

from trial.config import SweepConfig, resolve
from trial.data import open_split, prepare_data
from trial.filecheck import check_files
from trial.loop import Trainer, build_model
from trial.sampler import BalancedBatchSampler, composite_keys

SAMPLER_TARGET = 5e6
"""Indices per second, building the sampler and iterating one epoch."""
FILECHECK_TARGET = 0.05
"""A cached rerun over unchanged files, as a fraction of the first run."""
LOADING_TARGET = 0.05
"""An epoch's batch loading from the packed array, as a fraction of the epoch's training."""


def best_of(repeats: int, run: Callable[[], object], setup: Callable[[], object] | None = None) -> float:
    """The shortest of `repeats` timed calls of `run`; `setup` runs untimed before each."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def met_or_missed(ratio: float, target: float, *, at_most: bool) -> str:
    met = ratio <= target if at_most else ratio >= target
    return "met" if met else "missed"


def bench_sampler(n_samples: int, repeats: int) -> None:
    """Build + iterate one epoch over 4 strata of very different sizes, batch 64."""
    rng = np.random.default_rng(0)
    strata = np.array(["0|<40", "0|40-60", "1|<40", "1|60-80"], dtype=object)
    keys = rng.choice(strata, size=n_samples, p=[0.70, 0.20, 0.09, 0.01])
    for replicas in (1, 2):
        yielded = 0

        def epoch() -> None:
            nonlocal yielded
            # Rank 0 of `replicas`: each rank builds the whole plan and keeps its share,
            # so one rank's indices per second is what every rank gets.
            sampler = BalancedBatchSampler(keys, 64, num_replicas=replicas, rank=0, seed=0)
            sampler.set_epoch(1)
            yielded = sum(len(batch) for batch in sampler)

        seconds = best_of(repeats, epoch)
        per_second = yielded / seconds
        ratio = per_second / SAMPLER_TARGET
        ranks = "1 replica" if replicas == 1 else f"{replicas} replicas, per rank"
        print(
            f"sampler ({ranks}, {n_samples:,} keys, {yielded:,} indices per epoch): "
            f"{per_second / 1e6:.1f}M indices/s (target >= {SAMPLER_TARGET / 1e6:.0f}M): "
            f"ratio {ratio:.2f}, {met_or_missed(ratio, 1.0, at_most=False)}"
        )


def bench_filecheck(n_files: int, repeats: int, folder: Path) -> None:
    """check_files over `n_files` small .npy files: first run, cached rerun, and two baselines."""
    rng = np.random.default_rng(0)
    paths = [folder / f"x{i:06d}.npy" for i in range(n_files)]
    for path in paths:
        np.save(path, rng.standard_normal((3, 50), dtype=np.float32))
    cache = folder / "filecheck.sqlite"
    names = [os.fspath(p) for p in paths]

    first = best_of(repeats, lambda: check_files(paths, cache_file=cache), setup=lambda: cache.unlink(missing_ok=True))
    cached = best_of(repeats + 2, lambda: check_files(paths, cache_file=cache))
    result = check_files(paths, cache_file=cache)
    if result.bad or result.shape != (3, 50):
        raise RuntimeError(f"the benchmark's files should all pass, got {result.bad[:3]} shape {result.shape}")
    # The floor: a rerun must stat every file to notice a change.
    stats = best_of(repeats + 2, lambda: [os.stat(name) for name in names])
    # The plain check: load every file and test its values, as check_files did before it
    # read headers itself.
    plain = best_of(1, lambda: [np.isfinite(np.load(name)).all() for name in names])

    print(
        f"filecheck over {n_files:,} files: first run {first:.2f} s, cached rerun {cached:.3f} s; "
        f"baselines: os.stat of every file {stats:.3f} s, np.load of every file {plain:.2f} s"
    )
    ratio = cached / first
    print(
        f"filecheck cached rerun / first run: {ratio:.3f} (target <= {FILECHECK_TARGET}), "
        f"{met_or_missed(ratio, FILECHECK_TARGET, at_most=True)}"
    )
    print(f"filecheck cached rerun / os.stat of every file: {cached / stats:.2f} (1.0 is the floor)")
    print(f"filecheck cached rerun / np.load of every file: {cached / plain:.3f}")
    print(f"filecheck first run / np.load of every file: {first / plain:.3f}")


def demo_ecg_config(folder: Path, n_recordings: int, name: str) -> SweepConfig:
    """ecg_cnn1d on `n_recordings` demo_ecg recordings, every store inside `folder`."""
    return resolve(
        {
            "name": name,
            "seed": 42,
            "data": {"dataset": "demo_ecg", "dataset_params": {"n_recordings": n_recordings}, "root": str(folder / "data")},
            "solver": {"name": "ecg_cnn1d"},
            "search": {"space": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}},
            "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": name},
            "storage": str(folder / "runs"),
        }
    )


def bench_loading(n_recordings: int, repeats: int, folder: Path) -> None:
    """One epoch of ecg_cnn1d on demo_ecg: batch loading alone vs train_epoch (loading + compute)."""
    config = demo_ecg_config(folder, n_recordings, "bench-data")
    prepared = prepare_data(config)
    torch.set_num_threads(1)
    torch.manual_seed(config.seed)
    # As trial/loop.py's train_solver sets up one worker's epoch.
    train = open_split(prepared, "train")
    solver = config.solver.cls(config.solver.params)
    keys = composite_keys(train.frame, prepared.balance) if prepared.balance else None
    sampler = BalancedBatchSampler(keys, solver.params.batch_size, seed=config.seed)
    model = build_model(solver, prepared.input_shape, prepared.num_classes)
    trainer = Trainer.for_data(solver, model, prepared, train, sampler, device=torch.device("cpu"), seed=0)

    def load_only() -> None:
        for _x, _y in train.batches(sampler):
            pass

    def train_epoch() -> None:
        trainer.train_epoch(model, train.batches(sampler))

    train_epoch()  # warm-up: first-call allocations and lazy initialisation
    loading = best_of(repeats + 2, load_only)
    epoch = best_of(repeats, train_epoch)
    ratio = loading / epoch
    print(
        f"one epoch of {config.solver.name} on demo_ecg ({n_recordings:,} recordings, {len(train):,} in train, "
        f"{len(sampler)} batches): loading {loading:.4f} s, train_epoch {epoch:.2f} s"
    )
    print(
        f"packed-cache loading / epoch compute: {ratio:.4f} (target <= {LOADING_TARGET}), "
        f"{met_or_missed(ratio, LOADING_TARGET, at_most=True)}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    bench_sampler(100_000 if args.quick else 1_000_000, repeats)
    with tempfile.TemporaryDirectory(prefix="bench-filecheck-") as folder:
        bench_filecheck(2_000 if args.quick else 100_000, repeats, Path(folder))
    with tempfile.TemporaryDirectory(prefix="bench-loading-") as folder:
        bench_loading(240 if args.quick else 2000, repeats, Path(folder))


if __name__ == "__main__":
    main()
