"""The per-worker training loop: a plain PyTorch loop with numbered steps.

`train_solver(job, ctx)` runs unchanged in a Tune trial's own process, on every worker
of a TorchTrainer group, and in a plain process (benchmarks' baselines). Everything
that differs between those places hides behind the `SolverContext`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import torch

from solvers import EarlyStopping, Solver, get_solver
from trial.context import SolverContext
from trial.data import PreparedData, SplitData, open_split
from trial.metrics import classification_metrics
from trial.sampler import BalancedBatchSampler, composite_keys
from trial.seeding import seed_everything


@dataclass(frozen=True)
class TrialJob:
    """What one trial trains: picklable, built by the driver, the same on every worker."""

    solver: str
    params: Mapping[str, Any]
    data: PreparedData
    root_seed: int
    metric: str
    mode: str
    threads: int = 1
    use_gpu: bool = False
    trial_params: Mapping[str, Any] = field(default_factory=dict)

    def with_trial_params(self, values: Mapping[str, Any]) -> TrialJob:
        """This job with one trial's searched values put into the solver params."""
        return replace(self, params={**self.params, **values}, trial_params=dict(values))

    def make_solver(self) -> Solver:
        solver_cls = get_solver(self.solver)
        return solver_cls(solver_cls.parse_params(self.params))

    def is_better(self, score: float, best: float | None) -> bool:
        if math.isnan(score):
            return False
        return best is None or (score > best if self.mode == "max" else score < best)


def train_solver(job: TrialJob, ctx: SolverContext) -> None:
    # 1. Seed this worker from (root seed, world rank); size its threads to its CPUs.
    seed_everything(ctx.seed)
    torch.set_num_threads(job.threads)
    device = _device(job)

    # 2. Open the shared, memory-mapped data: nothing is copied per trial.
    frame = job.data.frame()
    train, valid = open_split(job.data, "train", frame), open_split(job.data, "valid", frame)
    solver = job.make_solver()
    sampler = train_sampler(job, train, solver.params.batch_size, num_replicas=ctx.world_size, rank=ctx.world_rank)

    # 3. Build the model; DDP keeps rank 0's initial weights on every rank.
    model = solver.build_model(job.data.input_shape, job.data.num_classes).to(device)
    if ctx.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    solver.prepare(train.y, job.data.num_classes)
    optimizer = solver.configure_optimizer(model, len(sampler))
    params = solver.params
    stopper = EarlyStopping(params.patience, params.min_delta, job.mode) if params.patience else None
    worker_tags = _gather_worker_tags(ctx)

    # 4. Resume from the last checkpoint if this trial is restarting.
    start_epoch, best_score, best_state = 0, None, None
    state = ctx.restore()
    if state is not None:
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        solver.load_training_state(state["training"])
        _set_rng_state(state["rng"])
        if stopper is not None:
            stopper.load_state_dict(state["early_stopping"])
        start_epoch, best_score, best_state = state["epoch"], state["best_score"], state["best_model"]

    # 5. Train and evaluate each epoch; report metrics, rank 0 adds the checkpoint.
    for epoch in range(start_epoch, params.epochs):
        sampler.set_epoch(epoch)
        train_loss = solver.train_epoch(model, train.batches(sampler), optimizer, device)
        solver.end_epoch()
        metrics = evaluate(solver, model, valid, device, prefix="valid")
        score = metrics[job.metric]
        if best_state is None or job.is_better(score, best_score):
            best_score = None if math.isnan(score) else score
            best_state = _cpu_state(_unwrap(model))
        # Every rank sees the same valid metrics, so all ranks stop at the same epoch.
        stop = stopper is not None and stopper.update(score)
        metrics.update({"epoch": epoch + 1, "train/loss": train_loss, "early_stopped": int(stop), **worker_tags})
        checkpoint = None
        if ctx.world_rank == 0:
            checkpoint = {
                "model": _cpu_state(_unwrap(model)),
                "optimizer": optimizer.state_dict(),
                "training": solver.training_state(),
                "early_stopping": stopper.state_dict() if stopper is not None else {},
                "rng": _rng_state(),
                "epoch": epoch + 1,
                "best_score": best_score,
                "best_model": best_state,
            }
        ctx.report(metrics, checkpoint)
        if stop:
            break


def train_sampler(
    job: TrialJob, train: SplitData, batch_size: int, *, num_replicas: int, rank: int = 0, drop_last: bool = True
) -> BalancedBatchSampler:
    """The training split's batches: one epoch plan for all ranks (same seed), disjoint batches per rank."""
    keys = composite_keys(train.frame, job.data.balance) if job.data.balance else None
    return BalancedBatchSampler(
        keys,
        batch_size,
        num_replicas=num_replicas,
        rank=rank,
        seed=job.root_seed,
        num_samples=len(train),
        drop_last=drop_last,
    )


def evaluate(solver: Solver, model: torch.nn.Module, split: SplitData, device: torch.device, *, prefix: str) -> dict[str, float]:
    """`prefix/<metric>` for every classification metric over a whole split."""
    return split_metrics(split, predict(solver, model, split, device), prefix=prefix)


def split_metrics(split: SplitData, proba: np.ndarray, *, prefix: str) -> dict[str, float]:
    return {f"{prefix}/{name}": value for name, value in classification_metrics(split.y, proba).items()}


def predict(solver: Solver, model: torch.nn.Module, split: SplitData, device: torch.device) -> np.ndarray:
    batch_size = max(solver.params.batch_size, 256)
    return solver.predict_proba(model, split.batches(split.in_order(batch_size)), device)


def load_trained_model(job: TrialJob, model_state: Mapping[str, Any]) -> tuple[Solver, torch.nn.Module]:
    """The solver and its model with the given weights, on CPU, for after-sweep evaluation."""
    solver = job.make_solver()
    model = solver.build_model(job.data.input_shape, job.data.num_classes)
    model.load_state_dict(model_state)
    return solver, model


def _gather_worker_tags(ctx: SolverContext) -> dict[str, str]:
    """Every rank's seed and node, gathered so rank 0's report carries the whole group's."""
    mine = (ctx.world_rank, ctx.seed, ctx.node_id)
    if ctx.world_size > 1:
        everyone: list[Any] = [None] * ctx.world_size
        torch.distributed.all_gather_object(everyone, mine)
    else:
        everyone = [mine]
    everyone.sort()
    return {
        "seeds": ",".join(f"{rank}:{seed}" for rank, seed, _ in everyone),
        "nodes": ",".join(f"{rank}:{node}" for rank, _, node in everyone),
    }


def _rng_state() -> dict[str, Any]:
    """torch's generators (CPU, and CUDA's where used): dropout and augmentation draw from them."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _device(job: TrialJob) -> torch.device:
    if job.use_gpu and torch.cuda.is_available():
        # Ray sets CUDA_VISIBLE_DEVICES per worker, so its GPU is always index 0 here.
        return torch.device("cuda", 0)
    return torch.device("cpu")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
