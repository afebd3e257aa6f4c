"""A team's own model: a small 1-D ResNet for multi-lead recordings, as a trial solver.

Nothing here knows about Ray, Optuna or MLflow: trial trains it (loop, checkpoints,
early stopping, distributed workers) and searches its params like the built-in ones.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from trial import DataError, Solver, SolverParams


class ResidualBlock(nn.Module):
    """Two 1-D convolutions with a shortcut; `stride` 2 halves the length."""

    def __init__(self, width_in: int, width: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(width_in, width, 7, stride=stride, padding=3, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Conv1d(width, width, 7, padding=3, bias=False),
            nn.BatchNorm1d(width),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and width_in == width
            else nn.Sequential(nn.Conv1d(width_in, width, 1, stride=stride, bias=False), nn.BatchNorm1d(width))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet1d(Solver):
    """A stem, `blocks` residual blocks (each halving the length, doubling the width every
    second one), global average pooling and a linear head."""

    data_kinds = ("signal",)

    class Params(SolverParams):
        width: int = Field(16, ge=4)
        """Channels of the stem and the first blocks."""
        blocks: int = Field(3, ge=1, le=6)
        """Residual blocks; each halves the recording's length."""

    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if len(input_shape) != 2 or input_shape[1] < 2 ** (self.params.blocks + 1):
            raise DataError(f"ResNet1d expects [leads, length >= {2 ** (self.params.blocks + 1)}], got {list(input_shape)}")
        width = self.params.width
        layers: list[nn.Module] = [
            nn.Conv1d(input_shape[0], width, 15, stride=2, padding=7, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
        ]
        for index in range(self.params.blocks):
            wider = width * 2 if index % 2 == 1 else width
            layers.append(ResidualBlock(width, wider, stride=2))
            width = wider
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten()]
        return nn.Sequential(nn.Sequential(*layers), nn.Linear(width, num_classes))
