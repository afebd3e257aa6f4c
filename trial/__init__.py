"""trial: hyperparameter sweeps of PyTorch solvers on Ray Tune + Optuna, tracked in MLflow.

What a team's own code imports. A solver module needs only `Solver` and `SolverParams`
(and `DataError` to refuse a shape), which import torch and pydantic, never Ray or
MLflow; the sweep's entry points load on first use.
"""
from __future__ import annotations

from typing import Any

from trial import timings  # first: it notes when this package began to import (trial.timings)
from trial.errors import ConfigError, DataError, UserError
from trial.solver import DATA_KINDS, Solver, SolverParams

__all__ = [
    "DATA_KINDS",
    "ConfigError",
    "DataError",
    "Solver",
    "SolverParams",
    "UserError",
    "check_solver",
    "load_config",
    "run_sweep",
]

# name -> module, imported when first used: they bring Ray, Optuna and MLflow.
_LAZY = {"load_config": "trial.config", "run_sweep": "trial.sweep", "check_solver": "trial.solver_checks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trial' has no attribute {name!r}")
