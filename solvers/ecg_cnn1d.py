"""`ecg_cnn1d`: a small 1D CNN for multi-lead signals shaped [leads, length]."""
from __future__ import annotations

from torch import nn

from solvers.conv import ConvSolver
from trial import DataError

# (output width as a multiple of `channels`, kernel size) per block; each block halves
# the length, so four blocks see about 80 samples at once: a whole QRS complex and the
# ST segment after it at 250-400 Hz.
_BLOCKS = ((1, 7), (1, 7), (2, 5), (2, 5))
_MIN_LENGTH = 2 ** len(_BLOCKS)


class ECGCNN1d(ConvSolver):
    """Conv1d + BatchNorm + ReLU + max-pool blocks, global average pooling, dropout, linear head.

    Global pooling makes the model independent of the recording length, and keeps it
    small enough to train an epoch of 2,000 three-lead recordings in seconds on one CPU thread.
    """

    data_kinds = ("signal",)

    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if len(input_shape) != 2 or input_shape[1] < _MIN_LENGTH:
            raise DataError(
                f"solver ecg_cnn1d expects each sample shaped [leads, length] with length >= {_MIN_LENGTH}, "
                f"got {list(input_shape)}"
            )
        layers: list[nn.Module] = []
        width_in = input_shape[0]
        for multiple, kernel in _BLOCKS:
            width = multiple * self.params.channels
            layers += [
                # No conv bias: the BatchNorm right after it has one.
                nn.Conv1d(width_in, width, kernel, padding=kernel // 2, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2, ceil_mode=True),
            ]
            width_in = width
        layers += [
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Dropout(self.params.dropout),
            nn.Linear(width_in, num_classes),
        ]
        return nn.Sequential(*layers)
