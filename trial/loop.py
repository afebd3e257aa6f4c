"""THE training loop: epochs, batches, optimizer and LR scheduler, AMP, augmentation and
mixing, class weights, early stopping, fine-tuning, checkpoint state.

`train_solver(job, ctx)` runs unchanged in a Tune trial's own process, on every worker
of a TorchTrainer group, and in a plain process (benchmarks' baseline, pre-flight,
`trial check-solver`). Everything that differs between those places hides behind the
`SolverContext`. A solver (trial/solver.py) only builds its model and may override a
few hooks, as a LightningModule does for Lightning's Trainer.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from trial import timings
from trial.augment import CUTMIX_KINDS, cutmix, mixup
from trial.config import SEARCHED_SEED, SweepConfig
from trial.context import CHECKPOINT_FILE, SolverContext
from trial.data import PreparedData, SplitData, open_split
from trial.errors import ConfigError, first_line
from trial.metrics import classification_metrics
from trial.plugins import load_augmentation, solver_label
from trial.runs import NODES_TAG, SEEDS_TAG, member_label
from trial.sampler import BalancedBatchSampler, composite_keys
from trial.seeding import repeat_seed, seed_everything
from trial.solver import Solver, SolverParams

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Member:
    """One model of an ensemble trial: the fold it validates on (search.cv) and its repeat
    (search.repeats); None where the trial has no folds or no repeats."""

    fold: int | None
    repeat: int | None

    @property
    def label(self) -> str:
        return member_label(self.fold, self.repeat)


def ensemble_members(folds: int | None, repeats: int) -> tuple[Member, ...]:
    """Every (fold, repeat) of a trial, folds outer: `folds` None trains the manifest's own
    split; `repeats` 1 trains the root seed alone. A single model gives ()."""
    fold_values: list[int | None] = list(range(folds)) if folds else [None]
    repeat_values: list[int | None] = list(range(repeats)) if repeats > 1 else [None]
    if fold_values == [None] and repeat_values == [None]:
        return ()
    return tuple(Member(fold, repeat) for fold in fold_values for repeat in repeat_values)


def sweep_members(config: SweepConfig) -> tuple[Member, ...]:
    """The models each trial of this sweep trains: every fold (search.cv) x every repeat."""
    return ensemble_members(config.data.split.folds if config.search.cv else None, config.search.repeats)


@dataclass(frozen=True)
class TrialJob:
    """What one trial trains: picklable, built by the driver, the same on every worker.

    `solver` is the class itself (workers import its module by name; user modules reach
    them through Ray's runtime_env) and `params` its validated, typed Params.
    `pretrained` holds `params.init_from`'s weights, read once by the driver: they reach
    workers on other machines with the job, where the file itself may not exist.
    """

    solver: type[Solver]
    params: SolverParams
    data: PreparedData
    root_seed: int
    metric: str
    mode: str
    threads: int = 1
    use_gpu: bool = False
    trial_params: Mapping[str, Any] = field(default_factory=dict)
    pretrained: Mapping[str, torch.Tensor] | None = None
    members: tuple[Member, ...] = ()
    """An ensemble trial's models (search.cv, search.repeats); () trains one model."""
    fold: int | None = None
    """The fold this model validates on (the others train it); None: the manifest's split."""

    def with_trial_params(self, values: Mapping[str, Any]) -> TrialJob:
        """This job with one trial's searched values validated into the solver's Params
        (a searched `seed` is the trial's root seed). A searched `init_from` is read where
        the trial runs."""
        solver_values = {key: value for key, value in values.items() if key != SEARCHED_SEED}
        params = self.solver.parse_params({**dict(self.params), **solver_values})
        pretrained = self.pretrained if params.init_from == self.params.init_from else None
        root_seed = int(values.get(SEARCHED_SEED, self.root_seed))
        return replace(self, params=params, trial_params=dict(values), pretrained=pretrained, root_seed=root_seed)

    def for_member(self, member: Member) -> TrialJob:
        """The job of one ensemble member: its fold, and its repeat's seed."""
        return replace(self, members=(), fold=member.fold, root_seed=repeat_seed(self.root_seed, member.repeat or 0))

    def make_solver(self) -> Solver:
        return self.solver(self.params)

    @property
    def solver_name(self) -> str:
        return solver_label(self.solver)

    def is_better(self, score: float, best: float | None) -> bool:
        if math.isnan(score):
            return False
        return best is None or (score > best if self.mode == "max" else score < best)


# -- the epoch loop ------------------------------------------------------------------------


def train_solver(job: TrialJob, ctx: SolverContext) -> None:
    """One model's trial: train and evaluate each epoch, report its metrics and (rank 0)
    the checkpoint to resume from. An ensemble trial goes through `train_ensemble`."""
    with timings.span("trial: set-up (restore, seed, data, model)"):
        # 1. Resume from the last checkpoint if this trial is restarting.
        state = ctx.restore()
        # 2. Seed this worker from (root seed, world rank), open the shared data, build the model.
        training = ModelTraining(job, seed=ctx.seed, world_rank=ctx.world_rank, world_size=ctx.world_size, state=state)
        progress = EpochProgress(job, state)
        best_state = state["best_model"] if state is not None else None
        worker_tags = _gather_worker_tags(ctx)

    # 3. Train and evaluate each epoch; report metrics, rank 0 adds the checkpoint.
    for epoch in range(progress.epoch, job.params.epochs):
        with timings.span("trial: epochs (train and valid)"):
            metrics = training.train_epoch(epoch)
        improved, stop = progress.record(metrics[job.metric])
        if improved:
            best_state = training.weights()
        metrics.update({"epoch": epoch + 1, "early_stopped": int(stop), **worker_tags})
        checkpoint = None
        if ctx.world_rank == 0:
            checkpoint = {**training.state_dict(), **progress.state_dict(), "best_model": best_state}
        with timings.span("trial: report and checkpoint"):
            ctx.report(metrics, checkpoint)
        if stop:
            break


class MemberPool(Protocol):
    """Where an ensemble trial's members train: one after another in the trial's process
    (`MemberTrainings`), or side by side in Ray actors (trial.ray_backend)."""

    def train_epoch(self, epoch: int) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
        """Every member's epoch: label -> (its metrics, its `ModelTraining.state_dict()`), in member order."""

    def nodes(self) -> dict[str, str]:
        """label -> the node each member trains on."""

    def close(self) -> None:
        """End whatever processes the pool started."""


def train_ensemble(job: TrialJob, ctx: SolverContext, open_pool: Callable[[Mapping[str, Any]], MemberPool]) -> None:
    """An ensemble trial (search.cv, search.repeats): every member trains one epoch, then the
    trial reports the mean over members of each metric (what ASHA prunes on), its spread
    (`valid/<m>_std`) and each member's (`<member>/valid/<m>`). The checkpoint holds every
    member's state, so a restarted trial resumes each member where it was; the members'
    weights at the best epoch by the mean are the trial's ensemble."""
    # 1. Resume every member from the last checkpoint if this trial is restarting.
    with timings.span("trial: set-up (restore, seed, data, model)"):
        state = ctx.restore()
        pool = open_pool(state["members"] if state is not None else {})
    progress = EpochProgress(job, state)
    best_members = state["best_members"] if state is not None else None
    best_scores = state["best_member_scores"] if state is not None else None
    seeds = ",".join(f"{member.label}:{job.for_member(member).root_seed}" for member in job.members)

    # 2. One epoch of every member, then one report for the trial.
    try:
        nodes = None
        for epoch in range(progress.epoch, job.params.epochs):
            with timings.span("trial: epochs (train and valid)"):
                results = pool.train_epoch(epoch)
            if nodes is None:
                # Asked after the first epoch: before it, this would wait for the member
                # actors' start-up while the trial's own members could already train.
                nodes = ",".join(f"{label}:{node}" for label, node in pool.nodes().items())
            member_metrics = {label: metrics for label, (metrics, _) in results.items()}
            metrics = ensemble_metrics(member_metrics)
            improved, stop = progress.record(metrics[job.metric])
            if improved:
                best_members = {label: member_state["model"] for label, (_, member_state) in results.items()}
                best_scores = {label: member[job.metric] for label, member in member_metrics.items()}
            metrics.update({"epoch": epoch + 1, "early_stopped": int(stop), SEEDS_TAG: seeds, NODES_TAG: nodes})
            checkpoint = {
                "members": {label: member_state for label, (_, member_state) in results.items()},
                **progress.state_dict(),
                "best_members": best_members,
                "best_member_scores": best_scores,
            }
            with timings.span("trial: report and checkpoint"):
                ctx.report(metrics, checkpoint)
            if stop:
                break
    finally:
        pool.close()


def ensemble_metrics(member_metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The trial's report from its members' epoch metrics: each metric's mean over members,
    `<metric>_std` (the population spread) for valid metrics, and each member's own
    metrics under its label. NaN stays NaN (a member whose AUROC is undefined)."""
    first = next(iter(member_metrics.values()))
    out: dict[str, float] = {}
    for key in first:
        values = np.array([float(metrics[key]) for metrics in member_metrics.values()])
        out[key] = float(values.mean())
        if key.startswith("valid/"):
            out[f"{key}_std"] = float(values.std())
    for label, metrics in member_metrics.items():
        out.update({f"{label}/{key}": float(value) for key, value in metrics.items()})
    return out


class MemberTrainings:
    """Ensemble members trained one after another in this process; each keeps its own random
    state, so its epochs draw what they would draw were it alone (see ModelTraining)."""

    def __init__(self, job: TrialJob, members: Sequence[Member], states: Mapping[str, Any], node_id: str) -> None:
        self.node_id = node_id
        self.trainings: dict[str, ModelTraining] = {}
        for member in members:
            member_job = job.for_member(member)
            self.trainings[member.label] = ModelTraining(
                member_job, seed=member_job.root_seed, state=states.get(member.label)
            )

    def train_epoch(self, epoch: int) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
        return {label: (training.train_epoch(epoch), training.state_dict()) for label, training in self.trainings.items()}

    def nodes(self) -> dict[str, str]:
        return {label: self.node_id for label in self.trainings}

    def close(self) -> None:
        pass  # nothing of its own to end: it lives in the trial's process


class ModelTraining:
    """One model's training, an epoch per call: its split of the shared data, the balanced
    sampler, the model, its Trainer and its torch random state.

    The random state is restored before and saved after each epoch: an ensemble trial
    trains several of these in one process, epoch by epoch, and each must draw (dropout,
    mixing) as it would alone and as it does again after a resume.
    """

    def __init__(
        self, job: TrialJob, *, seed: int, world_rank: int = 0, world_size: int = 1, state: Mapping[str, Any] | None = None
    ) -> None:
        seed_everything(seed)
        torch.set_num_threads(job.threads)
        self.job, self.world_size = job, world_size
        self.device = _device(job)
        # The shared, memory-mapped data: nothing is copied per trial.
        frame = job.data.frame()
        self.train = open_split(job.data, "train", frame, fold=job.fold)
        self.valid = open_split(job.data, "valid", frame, fold=job.fold)
        self.solver = job.make_solver()
        self.sampler = train_sampler(job, self.train, self.solver.params.batch_size, num_replicas=world_size, rank=world_rank)
        # From pretrained weights when fine-tuning; DDP keeps rank 0's initial weights on every rank.
        self.base_model = build_model(self.solver, job.data.input_shape, job.data.num_classes, job.pretrained).to(self.device)
        self.trainer = Trainer.for_data(self.solver, self.base_model, job.data, self.train, self.sampler, device=self.device, seed=seed)
        self.model: nn.Module | None = None
        if state is not None:
            self.base_model.load_state_dict(state["model"])
            self.trainer.load_state_dict(state["training"])
        self.rng = state["rng"] if state is not None else _rng_state()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch `epoch` (0-based) and evaluate on the valid split: `valid/<m>` and `train/loss`."""
        _set_rng_state(self.rng)
        params = self.solver.params
        unfroze = set_frozen(self.base_model, params, epoch)
        if self.model is None or unfroze:
            # DDP syncs only the parameters that need a gradient when it is built, so a
            # model that unfreezes some is wrapped anew.
            self.model = _distributed(self.base_model, self.world_size)
        self.sampler.set_epoch(epoch)
        train_loss = self.trainer.train_epoch(self.model, self.train.batches(self.sampler))
        self.trainer.end_epoch()
        metrics = evaluate(self.model, self.valid, self.device, batch_size=params.batch_size, prefix="valid")
        metrics["train/loss"] = train_loss
        self.rng = _rng_state()
        return metrics

    def weights(self) -> dict[str, torch.Tensor]:
        return _cpu_state(self.base_model)

    def state_dict(self) -> dict[str, Any]:
        """What resuming this model needs: weights, Trainer state, random state."""
        return {"model": self.weights(), "training": self.trainer.state_dict(), "rng": self.rng}


class EpochProgress:
    """A trial's place in its epochs: the next epoch, the best score so far, early stopping.
    Every rank sees the same valid metrics, so all ranks stop at the same epoch."""

    def __init__(self, job: TrialJob, state: Mapping[str, Any] | None = None) -> None:
        params = job.params
        self.job = job
        self.stopper = EarlyStopping(params.patience, params.min_delta, job.mode) if params.patience else None
        self.epoch, self.best_score = 0, None
        if state is not None:
            self.epoch, self.best_score = state["epoch"], state["best_score"]
            if self.stopper is not None:
                self.stopper.load_state_dict(state["early_stopping"])

    def record(self, score: float) -> tuple[bool, bool]:
        """One epoch's score: (whether it is the best so far, whether to stop now). The
        first epoch counts as the best while every score is NaN, so a model is always kept."""
        improved = self.epoch == 0 or self.job.is_better(score, self.best_score)
        if improved:
            self.best_score = None if math.isnan(score) else score
        self.epoch += 1
        return improved, self.stopper is not None and self.stopper.update(score)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "best_score": self.best_score,
            "early_stopping": self.stopper.state_dict() if self.stopper is not None else {},
        }


def best_member_weights(state: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """A trial checkpoint's best weights by member label: an ensemble's members, or a single
    model's under the label ""."""
    members = state.get("best_members")
    return dict(members) if members else {"": state["best_model"]}


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


# -- one model's training state --------------------------------------------------------------


class Trainer:
    """One model's training machinery: optimizer, LR scheduler, AMP scaler, class weights,
    augmentations and their random generator. `state_dict` is what a checkpoint needs
    besides the model's weights (plain tensors and numbers, loadable with weights_only)."""

    def __init__(
        self,
        solver: Solver,
        model: nn.Module,
        *,
        num_classes: int,
        data_kind: str | None,
        train_labels: np.ndarray,
        steps_per_epoch: int,
        device: torch.device,
        seed: int,
    ) -> None:
        p = solver.params
        self.solver, self.device, self.num_classes, self.data_kind = solver, device, num_classes, data_kind
        if p.cutmix > 0 and self.data_kind not in CUTMIX_KINDS:
            raise ConfigError(
                f"solver.params.cutmix: got {p.cutmix}, expected 0: cutmix needs {' or '.join(CUTMIX_KINDS)} data, "
                f"and this is {self.data_kind} data (mixup works for every kind)"
            )
        self.augmentations: list[Callable] = [load_augmentation(name, self.data_kind) for name in p.augment]
        self.rng = torch.Generator().manual_seed(seed)
        self.class_weights = (
            torch.from_numpy(inverse_frequency_weights(train_labels, num_classes)).to(device) if p.class_weights else None
        )
        self.optimizer = solver.configure_optimizer(model)
        self.scheduler, self.scheduler_per_batch = _lr_scheduler(p, self.optimizer, steps_per_epoch)
        self.amp_dtype = _amp_dtype(device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    @classmethod
    def for_data(
        cls, solver: Solver, model: nn.Module, data: PreparedData, train: SplitData, sampler: BalancedBatchSampler, *,
        device: torch.device, seed: int,
    ) -> Trainer:
        """The Trainer for a sweep's prepared data: its classes and kind, the training
        split's labels (class weights), the sampler's batches per epoch (onecycle)."""
        return cls(
            solver,
            model,
            num_classes=data.num_classes,
            data_kind=data.data_kind,
            train_labels=train.y,
            steps_per_epoch=len(sampler),
            device=device,
            seed=seed,
        )

    def train_epoch(self, model: nn.Module, batches: Batches) -> float:
        """One pass over `batches`, one optimizer step per batch; the mean loss per sample.

        Per batch: augment, mix, the solver's training step (under autocast on CUDA),
        backward, optimizer step, and a per-batch LR scheduler step.
        """
        p, device, optimizer = self.solver.params, self.device, self.optimizer
        mixing = p.mixup > 0 or p.cutmix > 0
        model.train()
        # Summed on the device and read once at the end: `.item()` per batch would
        # make every step wait for the GPU.
        total = torch.zeros((), device=device)
        count = 0
        for x, y in batches:
            x = _inputs(x, device)
            y = y.to(device, dtype=torch.long, non_blocking=True)
            targets: torch.Tensor = y
            for augmentation in self.augmentations:
                x = augmentation(x, self.rng)
            if mixing:
                x, targets = self._mix(x, y)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext():
                batch_loss = self.solver.training_step(model, x, targets, self.class_weights)
            if self.scaler is not None:
                self.scaler.scale(batch_loss).backward()
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                batch_loss.backward()
                optimizer.step()
            if self.scheduler_per_batch:
                self._step_per_batch_scheduler()
            total += batch_loss.detach().float() * len(y)
            count += len(y)
        if count == 0:
            raise ValueError("train_epoch: the loader yielded no batches")
        return float(total) / count

    def end_epoch(self) -> None:
        """After each epoch's training: step a per-epoch LR scheduler (step, cosine)."""
        if self.scheduler is not None and not self.scheduler_per_batch:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict(), "augment_rng": self.rng.get_state()}
        if self.scheduler is not None:
            state["lr_scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        scheduler_state = state.get("lr_scheduler")
        if (scheduler_state is None) != (self.scheduler is None):  # checked before anything is loaded
            raise ValueError(
                "Trainer.load_state_dict: the state "
                + ("has" if scheduler_state is not None else "has no")
                + f" LR scheduler state but lr_scheduler is {self.solver.params.lr_scheduler!r}"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["augment_rng"])
        if scheduler_state is not None:
            self.scheduler.load_state_dict(scheduler_state)
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])

    def _mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.solver.params
        # With both on, each batch gets one of them, as timm does.
        if p.cutmix > 0 and (p.mixup == 0 or bool(torch.rand(()) < 0.5)):
            return cutmix(x, y, self.num_classes, p.cutmix, self.data_kind)
        return mixup(x, y, self.num_classes, p.mixup)

    def _step_per_batch_scheduler(self) -> None:
        scheduler = self.scheduler
        # OneCycleLR's rates are defined for steps 0..total_steps-1 and it raises past the
        # end; if the loader yields more batches than steps_per_epoch promised, hold the
        # final (lowest) rate rather than fail the trial.
        if scheduler is not None and scheduler.last_epoch + 1 < getattr(scheduler, "total_steps", math.inf):
            scheduler.step()


def _lr_scheduler(
    p: SolverParams, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> tuple[torch.optim.lr_scheduler.LRScheduler | None, bool]:
    """The LR scheduler `lr_scheduler` names, and whether it steps per batch (else per epoch)."""
    schedulers = torch.optim.lr_scheduler
    if p.lr_scheduler == "step":
        step_size = p.step_size if p.step_size is not None else max(1, p.epochs // 3)
        return schedulers.StepLR(optimizer, step_size=step_size, gamma=p.gamma), False
    if p.lr_scheduler == "cosine":
        return schedulers.CosineAnnealingLR(optimizer, T_max=p.epochs), False
    if p.lr_scheduler == "onecycle":
        if steps_per_epoch < 1:
            raise ValueError(f"lr_scheduler 'onecycle' needs steps_per_epoch >= 1, got {steps_per_epoch!r}")
        # cycle_momentum=False: `momentum` (and Adam's betas) stay what the config says.
        scheduler = schedulers.OneCycleLR(
            optimizer, max_lr=p.lr, total_steps=p.epochs * steps_per_epoch, cycle_momentum=False
        )
        return scheduler, True
    return None, False


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype on CUDA (bfloat16 where supported, else float16 with a grad scaler); None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# -- the model: built, fine-tuned from weights, frozen ----------------------------------------


def build_model(
    solver: Solver, input_shape: tuple[int, ...], num_classes: int, pretrained: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """The solver's model for this data, starting from `init_from`'s weights when it is set
    (`pretrained`: those weights, read already)."""
    model = solver.build_model(tuple(input_shape), num_classes)
    if solver.params.init_from is not None:
        load_pretrained(solver, model, solver.params.init_from, weights=pretrained)
    return model


def load_pretrained(
    solver: Solver, model: nn.Module, source: str, *, weights: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Load `source`'s weights (or `weights`, read from it already) into `model`; with
    `head: replace` the classifier layer keeps its fresh initialisation. Weights that do
    not fit are one line naming them."""
    weights = read_weights(source) if weights is None else weights
    head = solver.head_name(model) if solver.params.head == "replace" else None
    in_head = (lambda key: _inside(key, head)) if head is not None else (lambda key: False)
    skipped = {key for key in weights if in_head(key)}
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights and not in_head(key)]
    unexpected = [key for key in weights if key not in expected and key not in skipped]
    mismatched = [
        f"{key} {list(weights[key].shape)} vs {list(expected[key].shape)}"
        for key in weights
        if key in expected and key not in skipped and tuple(weights[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if mismatched:
        # Only the classifier differing is what a dataset with other classes looks like.
        only_head = head is None and all(_inside(item.split(" ")[0], solver.head_name(model)) for item in mismatched)
        hint = " (a different number of classes? head: replace gives a new classifier)" if only_head else ""
        problems.append(f"shapes differ at {_listed(mismatched)}{hint}")
    if problems:
        raise ConfigError(f"solver.params.init_from: {source} does not fit the model: {'; '.join(problems)}")
    model.load_state_dict({key: value for key, value in weights.items() if key not in skipped}, strict=head is None)


def read_weights(source: str) -> dict[str, torch.Tensor]:
    """A state dict from a weights file, a trial checkpoint's state.pt (its best epoch's
    model), or a checkpoint folder holding one."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise ConfigError(f"solver.params.init_from: file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and torch's own errors alike: not a weights file
        if "Unsupported global" in str(error):
            # torch's own message is a multi-line essay; what it means for the user is this.
            raise ConfigError(
                f"solver.params.init_from: {path} holds Python objects besides tensors, which "
                "torch.load(weights_only=True) refuses to run; save the model's state_dict() instead"
            ) from None
        # torch wraps what its unpickler met after a long preamble: keep only that.
        cause = str(error).partition("WeightsUnpickler error:")[2].strip() or first_line(error)
        raise ConfigError(
            f"solver.params.init_from: {path} is not a weights file torch.load reads ({first_line(ValueError(cause))})"
        ) from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("best_model"), Mapping):
        loaded = loaded["best_model"]  # a trial checkpoint
    elif isinstance(loaded, Mapping) and isinstance(loaded.get("best_members"), Mapping):
        members = ", ".join(loaded["best_members"])
        raise ConfigError(
            f"solver.params.init_from: {path} is an ensemble trial's checkpoint (members {members}); "
            "name one member's weights file, <solver>-<trial>-<member>-<metric>=<value>.pt in the trial's folder"
        )
    if not (isinstance(loaded, Mapping) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values())):
        raise ConfigError(f"solver.params.init_from: {path} holds no state dict (a mapping of names to tensors)")
    return dict(loaded)


def set_frozen(model: nn.Module, params: SolverParams, epoch: int) -> bool:
    """Freeze the parameters under `freeze`'s prefixes until epoch `unfreeze_after`;
    True when this changed which parameters train."""
    if not params.freeze:
        return False
    frozen = params.unfreeze_after is None or epoch < params.unfreeze_after
    changed = False
    for prefix in params.freeze:
        matched = [p for name, p in model.named_parameters() if _inside(name, prefix)]
        if not matched:
            tops = sorted({name.split(".")[0] for name, _ in model.named_parameters()})
            raise ConfigError(f"solver.params.freeze: {prefix!r} names no parameter or module; top-level modules: {', '.join(tops)}")
        for parameter in matched:
            changed |= parameter.requires_grad == frozen
            parameter.requires_grad = not frozen
    return changed


def _inside(name: str, module: str) -> bool:
    """Whether parameter `name` belongs to `module` (a dotted module path; "" is the whole model).
    "1" covers "1.weight", never "10.weight"; a trailing dot is allowed ("features.")."""
    module = module.rstrip(".")
    return module == "" or name == module or name.startswith(module + ".")


def _listed(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _distributed(model: nn.Module, world_size: int) -> nn.Module:
    return torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model


# -- evaluation ------------------------------------------------------------------------------


def predict_proba(model: nn.Module, batches: Iterable[Any], device: torch.device | str) -> np.ndarray:
    """Softmax probabilities [N, num_classes] in batch order, in eval mode without grad.

    Batches may be (x, y) pairs or bare inputs; labels are ignored.
    """
    model.eval()
    chunks = []
    with torch.no_grad():
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            logits = model(_inputs(x, device))
            chunks.append(torch.softmax(logits.float(), dim=1).cpu())
    if not chunks:
        raise ValueError("predict_proba: the loader yielded no batches")
    return torch.cat(chunks).numpy().astype(np.float64)


def predict(model: nn.Module, split: SplitData, device: torch.device, *, batch_size: int) -> np.ndarray:
    return predict_proba(model, split.batches(split.in_order(max(batch_size, 256))), device)


def evaluate(model: nn.Module, split: SplitData, device: torch.device, *, batch_size: int, prefix: str) -> dict[str, float]:
    """`prefix/<metric>` for every classification metric over a whole split."""
    return split_metrics(split, predict(model, split, device, batch_size=batch_size), prefix=prefix)


def split_metrics(split: SplitData, proba: np.ndarray, *, prefix: str) -> dict[str, float]:
    return {f"{prefix}/{name}": value for name, value in classification_metrics(split.y, proba).items()}


def load_trained_model(job: TrialJob, model_state: Mapping[str, Any]) -> nn.Module:
    """The model with the given weights, on CPU, for after-sweep evaluation."""
    model = job.make_solver().build_model(job.data.input_shape, job.data.num_classes)
    model.load_state_dict(model_state)
    return model


# -- early stopping ---------------------------------------------------------------------------


class EarlyStopping:
    """Stop when a score has not improved by more than `min_delta` for `patience` epochs running.

    Feed it each epoch's score; `update` returns True when training should stop. The
    best score only moves on an improvement larger than `min_delta`, so slow creeping
    gains do not reset the count forever. A NaN score never improves.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "max") -> None:
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an int >= 1, got {patience!r}")
        if not (isinstance(min_delta, numbers.Real) and math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"EarlyStopping: min_delta must be a finite float >= 0, got {min_delta!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = mode
        self.best: float | None = None
        """The best score so far (None before the first real one)."""
        self.bad_epochs = 0
        """Consecutive epochs without an improvement larger than `min_delta`."""

    def update(self, score: float) -> bool:
        """Record one epoch's score; True means stop now."""
        score = float(score)
        if math.isnan(score):
            improved = False
        elif self.best is None:
            improved = True
        elif self.mode == "max":
            improved = score > self.best + self.min_delta
        else:
            improved = score < self.best - self.min_delta
        if improved:
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Best score and count of bad epochs: numbers only, checkpoint-safe."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        best = state["best"]
        self.best = None if best is None else float(best)
        self.bad_epochs = int(state["bad_epochs"])


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class loss weights ``n / (num_classes * count)`` (float32); 0 for a class with no samples.

    A class missing from the training split never is a hard target, so its weight
    only matters for smoothed or mixed targets; 0 keeps it out of the loss, with a warning.
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"class_weights: labels must be class indices in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.float64)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        warnings.warn(
            f"class_weights: classes {missing.tolist()} have no training samples; their loss weight is 0",
            stacklevel=3,
        )
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1.0)), 0.0)
    return weights.astype(np.float32)


# -- internals --------------------------------------------------------------------------------


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
        SEEDS_TAG: ",".join(f"{rank}:{seed}" for rank, seed, _ in everyone),
        NODES_TAG: ",".join(f"{rank}:{node}" for rank, _, node in everyone),
    }


def _rng_state() -> dict[str, Any]:
    """torch's generators (CPU, and CUDA's where used): dropout and mixing draw from them."""
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


def _inputs(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    # pandas hands tabular features over as float64, and the models are float32.
    if x.dtype == torch.float64:
        x = x.float()
    return x.to(device, non_blocking=True)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
