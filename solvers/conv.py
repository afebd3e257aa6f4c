"""What the CNN solvers share: a width and the dropout before the linear head."""
from __future__ import annotations

from pydantic import Field

from trial import Solver, SolverParams


class ConvParams(SolverParams):
    channels: int = Field(32, ge=1)
    """Width of the first blocks; the last blocks use twice as many."""
    dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout before the linear head."""


class ConvSolver(Solver):
    """Base of `ecg_cnn1d` and `image_cnn`; each defines its own blocks in build_model."""

    Params = ConvParams
