"""`tabular_mlp`: a multilayer perceptron for feature vectors shaped [features]."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field

from trial import DataError, Solver, SolverParams


class _FeatureNorm(nn.BatchNorm1d):
    """Standardises raw CSV columns with batch statistics, so no scaler has to be fitted first.

    BatchNorm cannot take batch statistics from a single sample, and a sampler may
    leave a last batch of one; such a batch is normalised with the running statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class TabularMLP(Solver):
    """Input standardisation, `layers` x (Linear + ReLU + dropout) of `hidden` units, linear head."""

    data_kinds = ("tabular",)

    class Params(SolverParams):
        hidden: int = Field(64, ge=1)
        """Units in each hidden layer."""
        layers: int = Field(2, ge=0)
        """Number of hidden layers; 0 gives logistic regression on standardised features."""
        dropout: float = Field(0.1, ge=0, lt=1)
        """Dropout after each hidden layer."""

    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if len(input_shape) != 1:
            raise DataError(f"solver tabular_mlp expects each sample shaped [features], got {list(input_shape)}")
        layers: list[nn.Module] = [_FeatureNorm(input_shape[0])]
        width_in = input_shape[0]
        for _ in range(self.params.layers):
            layers += [nn.Linear(width_in, self.params.hidden), nn.ReLU(inplace=True), nn.Dropout(self.params.dropout)]
            width_in = self.params.hidden
        layers.append(nn.Linear(width_in, num_classes))
        return nn.Sequential(*layers)
