"""What the CNN solvers share: a width and the dropout before the linear head."""
from __future__ import annotations

from dataclasses import dataclass

from solvers.base import Solver, out_of_range


class ConvSolver(Solver):
    """Base of `ecg_cnn1d` and `image_cnn`; each defines its own blocks in build_model."""

    @dataclass(frozen=True)
    class Params(Solver.Params):
        channels: int = 32
        """Width of the first blocks; the last blocks use twice as many."""
        dropout: float = 0.2
        """Dropout before the linear head."""

    @classmethod
    def check_params(cls, params: Params) -> None:
        super().check_params(params)
        if params.channels < 1:
            raise out_of_range("channels", params.channels, "an int >= 1")
        if not 0 <= params.dropout < 1:
            raise out_of_range("dropout", params.dropout, "a value in [0, 1)")
