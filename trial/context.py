"""What a solver's training loop sees of the world: its rank, its seed, report and checkpoint.

The loop never imports Ray. The same loop runs
- inside a Tune trial's own process (one worker): `RayContext.for_tune()`;
- on each worker of a TorchTrainer group (several workers): `RayContext.for_train()`;
- in a plain process with no Ray at all (tests, the plain-Optuna baseline): `LocalContext`.
`ray.train.get_context()` raises inside a plain Tune function, which is why trial keeps
a context of its own instead of asking Ray where it runs.
"""
from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from trial.seeding import worker_seed

CHECKPOINT_FILE = "state.pt"


def save_state(state: Mapping[str, Any], directory: Path) -> Path:
    path = directory / CHECKPOINT_FILE
    torch.save(dict(state), path)
    return path


def load_state(directory: Path) -> dict[str, Any]:
    # weights_only: a checkpoint is data, never code to run.
    return torch.load(directory / CHECKPOINT_FILE, weights_only=True, map_location="cpu")


@dataclass
class SolverContext(ABC):
    """A worker's place in its trial, and the way it reports back."""

    root_seed: int
    world_rank: int = 0
    world_size: int = 1
    node_id: str = "local"

    @property
    def seed(self) -> int:
        return worker_seed(self.root_seed, self.world_rank)

    @abstractmethod
    def report(self, metrics: Mapping[str, Any], checkpoint: Mapping[str, Any] | None = None) -> None:
        """Send one epoch's metrics (and, from rank 0, the state to resume from)."""

    @abstractmethod
    def restore(self) -> dict[str, Any] | None:
        """The state of the last reported checkpoint, if this trial is being resumed."""


@dataclass
class LocalContext(SolverContext):
    """No Ray: keeps what was reported, for tests and the plain baselines."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: dict[str, Any] | None = None

    def report(self, metrics: Mapping[str, Any], checkpoint: Mapping[str, Any] | None = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint is not None:
            self.last_checkpoint = dict(checkpoint)

    def restore(self) -> dict[str, Any] | None:
        return self.last_checkpoint


@dataclass
class RayContext(SolverContext):
    """Reports through Ray Tune (in-process trial) or Ray Train (worker group)."""

    report_fn: Callable[..., None] | None = None
    get_checkpoint_fn: Callable[[], Any] | None = None
    checkpoint_cls: type | None = None

    @classmethod
    def for_tune(cls, root_seed: int) -> RayContext:
        import ray
        from ray import tune

        return cls(
            root_seed=root_seed,
            node_id=ray.get_runtime_context().get_node_id(),
            report_fn=tune.report,
            get_checkpoint_fn=tune.get_checkpoint,
            checkpoint_cls=tune.Checkpoint,
        )

    @classmethod
    def for_train(cls, root_seed: int) -> RayContext:
        import ray
        import ray.train

        context = ray.train.get_context()
        return cls(
            root_seed=root_seed,
            world_rank=context.get_world_rank(),
            world_size=context.get_world_size(),
            node_id=ray.get_runtime_context().get_node_id(),
            report_fn=ray.train.report,
            get_checkpoint_fn=ray.train.get_checkpoint,
            checkpoint_cls=ray.train.Checkpoint,
        )

    def report(self, metrics: Mapping[str, Any], checkpoint: Mapping[str, Any] | None = None) -> None:
        if checkpoint is None:
            self.report_fn(dict(metrics))
            return
        with tempfile.TemporaryDirectory(prefix="trial-ckpt-") as directory:
            save_state(checkpoint, Path(directory))
            # Ray copies the folder into the trial's storage before report returns.
            self.report_fn(dict(metrics), checkpoint=self.checkpoint_cls.from_directory(directory))

    def restore(self) -> dict[str, Any] | None:
        checkpoint = self.get_checkpoint_fn()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return load_state(Path(directory))
