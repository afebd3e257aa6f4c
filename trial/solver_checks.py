"""The contract every solver keeps, as checks a team runs on its own solver.

The built-in solvers are tested with exactly these checks (tests/unit/test_solver_contract.py),
as Optuna tests every sampler through one parametrised suite. A team runs them with
`trial check-solver models:ResNet1d`, or in its own pytest suite:

    import pytest
    from trial.solver_checks import contract_cases, run_check

    @pytest.mark.parametrize(("check", "kind"), contract_cases("models:ResNet1d"))
    def test_resnet1d_keeps_the_solver_contract(check, kind):
        run_check("models:ResNet1d", check, kind)

Each check builds small random inputs of one data kind the solver claims (`data_kinds`)
and drives the model through trial's own loop (trial/loop.py), on the CPU.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from trial.errors import UserError, first_line
from trial.loop import Trainer, predict_proba
from trial.plugins import load_solver
from trial.solver import DATA_KINDS, Solver

INPUT_SHAPES = {"signal": (3, 256), "image": (3, 32, 32), "tabular": (10,)}
"""One sample's shape per data kind in the checks: small, but enough for a few poolings."""
NUM_CLASSES = 3
_BATCH = 8


class SolverCheckFailed(AssertionError):
    """A solver broke one check of the contract; the message is one line."""


def contract_cases(solver: str | type[Solver]) -> list[tuple[str, str | None]]:
    """(check, data kind) pairs to run on `solver`: kind None for the kind-free checks."""
    cls = _solver_class(solver)
    return [(name, None) for name in _KIND_FREE] + [(name, kind) for kind in _kinds(cls) for name in _PER_KIND]


def run_check(solver: str | type[Solver], check: str, kind: str | None = None) -> None:
    """Run one check; SolverCheckFailed with a one-line message when the solver breaks it."""
    cls = _solver_class(solver)
    function = {**_KIND_FREE, **_PER_KIND}[check]
    try:
        function(cls) if kind is None else function(cls, kind)
    except SolverCheckFailed:
        raise
    except UserError as error:
        raise SolverCheckFailed(first_line(error)) from None
    except Exception as error:  # the solver's own code failing: the failure to report
        raise SolverCheckFailed(f"{type(error).__name__}: {first_line(error)}") from None


def check_solver(solver: str | type[Solver]) -> list[tuple[str, str | None]]:
    """Every check on `solver`, in order: (`check[kind]`, its failure's one line, or None when it passes)."""
    results: list[tuple[str, str | None]] = []
    for check, kind in contract_cases(solver):
        name = f"{check}[{kind}]" if kind else check
        try:
            run_check(solver, check, kind)
        except SolverCheckFailed as failure:
            results.append((name, str(failure)))
        else:
            results.append((name, None))
    return results


# -- the checks ----------------------------------------------------------------------------


def _check_params(cls: type[Solver]) -> None:
    """Every param has a default; params validate, are frozen and survive a round trip."""
    try:
        params = cls.Params()
    except ValidationError as error:
        missing = [".".join(map(str, e["loc"])) for e in error.errors() if e["type"] == "missing"]
        raise SolverCheckFailed(f"Params needs a default for {', '.join(missing) or 'every field'}") from None
    if cls.parse_params({}) != params:
        raise SolverCheckFailed("parse_params({}) differs from Params()")
    if cls.parse_params(dict(params)) != params:
        raise SolverCheckFailed("params do not survive parse_params(dict(params))")
    try:
        params.epochs = params.epochs + 1  # type: ignore[misc]
    except ValidationError:
        pass
    else:
        raise SolverCheckFailed("Params is not frozen: model_config must keep frozen=True")


def _check_data_kinds(cls: type[Solver]) -> None:
    unknown = [kind for kind in cls.data_kinds if kind not in DATA_KINDS]
    if not cls.data_kinds or unknown:
        raise SolverCheckFailed(f"data_kinds must name some of {', '.join(DATA_KINDS)}, got {cls.data_kinds!r}")


def _check_builds(cls: type[Solver], kind: str) -> None:
    """build_model gives a module with parameters, mapping [N, *shape] to finite logits [N, classes]."""
    model = _build(cls, kind, seed=0)
    if not any(True for _ in model.parameters()):
        raise SolverCheckFailed("the model has no parameters to train")
    model.eval()
    with torch.no_grad():
        logits = model(_inputs(kind, _BATCH, seed=0))
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (_BATCH, NUM_CLASSES):
        got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise SolverCheckFailed(f"a batch {[_BATCH, *INPUT_SHAPES[kind]]} gave {got}, expected logits {[_BATCH, NUM_CLASSES]}")
    if not torch.isfinite(logits).all():
        raise SolverCheckFailed("the logits of a random batch are not all finite")


def _check_trains(cls: type[Solver], kind: str) -> None:
    """One epoch of trial's loop, through a DDP-like wrapper, gives a finite loss and moves the weights."""
    model, loss = _train_once(cls, kind, seed=0)
    if not math.isfinite(loss):
        raise SolverCheckFailed(f"the training loss is {loss}")
    untrained = _build(cls, kind, seed=0).state_dict()
    if all(torch.equal(untrained[key], value) for key, value in model.state_dict().items()):
        raise SolverCheckFailed("training steps changed no weight (are the parameters returned by the model used?)")


def _check_state_round_trip(cls: type[Solver], kind: str) -> None:
    """The weights survive a checkpoint (torch.save, weights_only load) into a model built anew."""
    model, _ = _train_once(cls, kind, seed=0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = _build(cls, kind, seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    batches = [(_inputs(kind, _BATCH, seed=2), torch.zeros(_BATCH, dtype=torch.long))]
    if not np.array_equal(predict_proba(model, batches, "cpu"), predict_proba(restored, batches, "cpu")):
        raise SolverCheckFailed("a model loaded from the trained model's state_dict predicts differently")


def _check_same_seed(cls: type[Solver], kind: str) -> None:
    """Built and trained twice under the same seed, the model comes out identical."""
    first, _ = _train_once(cls, kind, seed=5)
    second, _ = _train_once(cls, kind, seed=5)
    a, b = first.state_dict(), second.state_dict()
    differing = [key for key in a if not torch.equal(a[key], b[key])]
    if differing:
        raise SolverCheckFailed(f"the same seed gave different weights at {', '.join(differing[:3])}")


_KIND_FREE: dict[str, Callable[..., None]] = {"params": _check_params, "data_kinds": _check_data_kinds}
_PER_KIND: dict[str, Callable[..., None]] = {
    "builds": _check_builds,
    "trains": _check_trains,
    "state_round_trip": _check_state_round_trip,
    "same_seed": _check_same_seed,
}


# -- helpers ----------------------------------------------------------------------------------


class _Wrapped(nn.Module):
    """Stands in for DistributedDataParallel: only forward() reaches the inner model."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> Any:
        return self.module(x)


def _solver_class(solver: str | type[Solver]) -> type[Solver]:
    return load_solver(solver) if isinstance(solver, str) else solver


def _kinds(cls: type[Solver]) -> list[str]:
    return [kind for kind in cls.data_kinds if kind in INPUT_SHAPES]


def _build(cls: type[Solver], kind: str, *, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = cls(cls.parse_params({})).build_model(INPUT_SHAPES[kind], NUM_CLASSES)
    if not isinstance(model, nn.Module):
        raise SolverCheckFailed(f"build_model returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def _inputs(kind: str, n: int, *, seed: int) -> torch.Tensor:
    return torch.randn(n, *INPUT_SHAPES[kind], generator=torch.Generator().manual_seed(seed))


def _train_once(cls: type[Solver], kind: str, *, seed: int) -> tuple[nn.Module, float]:
    """Two batches of one epoch through trial's Trainer, as the loop runs them."""
    model = _build(cls, kind, seed=seed)
    labels = torch.arange(2 * _BATCH) % NUM_CLASSES
    x = _inputs(kind, 2 * _BATCH, seed=seed)
    batches = [(x[:_BATCH], labels[:_BATCH]), (x[_BATCH:], labels[_BATCH:])]
    trainer = Trainer(
        cls(cls.parse_params({})),
        model,
        num_classes=NUM_CLASSES,
        data_kind=kind,
        train_labels=labels.numpy(),
        steps_per_epoch=len(batches),
        device=torch.device("cpu"),
        seed=seed,
    )
    loss = trainer.train_epoch(_Wrapped(model), batches)
    return model, loss
