"""One training epoch of the demo model: trial's loop (trial/loop.py) against a plain PyTorch loop.

    python benchmarks/epoch.py                 # 2,000 demo_ecg recordings, 3 rounds (about 2 minutes on 2 cores)
    python benchmarks/epoch.py --quick         # 240 recordings, a smoke check of the script

Both variants train the same ecg_cnn1d model (same initial weights) over the same
balanced batches on one CPU thread: the plain loop is what a team would write by hand
(zero_grad, forward, cross-entropy, backward, step). The variants alternate (a b a b ...),
each epoch timed on its own; medians, spreads (max - min) and the ratio of medians are
printed. The ratio is trial's own cost per epoch: augmentation hooks, loss hook, the
loss sum kept on the device.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts benchmarks/ first on sys.path: put the project root there.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import torch
import torch.nn.functional as F

from benchmarks.data import demo_ecg_config
from trial.config import SweepConfig
from trial.data import PreparedData, SplitData, open_split, prepare_data
from trial.loop import Trainer, build_model
from trial.sampler import BalancedBatchSampler, composite_keys
from trial.solver import Solver


def plain_torch_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches) -> None:
    """One epoch as a team writes it by hand: zero_grad, forward, cross-entropy, backward, step."""
    model.train()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()


def balanced_sampler(config: SweepConfig, prepared: PreparedData, split: SplitData, solver: Solver) -> BalancedBatchSampler:
    """The balanced batches trial trains `split` with: the config's balance keys and root
    seed, the solver's batch size."""
    return BalancedBatchSampler(composite_keys(split.frame, prepared.balance), solver.params.batch_size, seed=config.seed)


def plain_model_and_optimizer(solver: Solver, prepared: PreparedData) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The solver's model and AdamW at its lr and weight decay, as a team builds them by hand."""
    model = solver.build_model(prepared.input_shape, prepared.num_classes)
    return model, torch.optim.AdamW(model.parameters(), lr=solver.params.lr, weight_decay=solver.params.weight_decay)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data and one round, for a smoke check")
    parser.add_argument("--rounds", type=int, default=3, help="epochs of each variant, alternating (default 3)")
    args = parser.parse_args(argv)
    n_recordings, rounds = (240, 1) if args.quick else (2000, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as folder:
        run(Path(folder), n_recordings, rounds)


def run(folder: Path, n_recordings: int, rounds: int) -> None:
    config = demo_ecg_config(folder, n_recordings, "bench-epoch")
    prepared = prepare_data(config)
    torch.set_num_threads(1)
    train = open_split(prepared, "train")
    solver = config.solver.cls(config.solver.params)
    sampler = balanced_sampler(config, prepared, train, solver)

    torch.manual_seed(0)
    platform_model = build_model(solver, prepared.input_shape, prepared.num_classes)
    trainer = Trainer.for_data(solver, platform_model, prepared, train, sampler, device=torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    plain_model, plain_optimizer = plain_model_and_optimizer(solver, prepared)

    def platform_epoch() -> None:
        trainer.train_epoch(platform_model, train.batches(sampler))

    def plain_epoch() -> None:
        plain_torch_epoch(plain_model, plain_optimizer, train.batches(sampler))

    variants = {"trial loop": platform_epoch, "plain loop": plain_epoch}
    for epoch in variants.values():
        epoch()  # warm-up: first-call allocations, lazy initialisation
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, epoch in variants.items():
            start = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - start)

    print(f"one epoch of ecg_cnn1d on demo_ecg: {len(train):,} training recordings, {len(sampler)} batches, 1 thread")
    print(f"{'variant':<12}{'median s':>10}{'spread s':>10}   samples")
    for name, samples in times.items():
        print(f"{name:<12}{statistics.median(samples):>10.3f}{max(samples) - min(samples):>10.3f}   "
              + " ".join(f"{s:.3f}" for s in samples))
    ratio = statistics.median(times["trial loop"]) / statistics.median(times["plain loop"])
    print(f"trial loop / plain loop (medians): {ratio:.3f}")


if __name__ == "__main__":
    main()
