"""Solvers: model families the platform can train, found by name in the registry.

Importing this package registers every solver module listed below; a new solver file
is added to that list.
"""
from __future__ import annotations

from solvers.augment import AUGMENTATIONS
from solvers.base import (
    DATA_KINDS,
    LR_SCHEDULERS,
    OPTIMIZERS,
    EarlyStopping,
    Solver,
    get_solver,
    out_of_range,
    register,
    registered_solvers,
)

# Imported for their @register side effect.
from solvers import ecg_cnn1d, image_cnn, tabular_mlp  # noqa: F401

__all__ = [
    "AUGMENTATIONS",
    "DATA_KINDS",
    "LR_SCHEDULERS",
    "OPTIMIZERS",
    "EarlyStopping",
    "Solver",
    "get_solver",
    "out_of_range",
    "register",
    "registered_solvers",
]
