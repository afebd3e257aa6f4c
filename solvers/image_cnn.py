"""`image_cnn`: a small 2D CNN for images shaped [channels, height, width]."""
from __future__ import annotations

from torch import nn

from solvers.conv import ConvSolver
from trial import DataError


class ImageCNN(ConvSolver):
    """Two 3x3 conv blocks, a 2x2 max-pool, a wider 3x3 block, global average pooling, linear head.

    Sized for small images such as 8x8 digits; global pooling accepts any height and width.
    """

    data_kinds = ("image",)

    def build_model(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if len(input_shape) != 3:
            raise DataError(
                f"solver image_cnn expects each sample shaped [channels, height, width], got {list(input_shape)}"
            )
        c = self.params.channels

        def block(width_in: int, width: int) -> list[nn.Module]:
            # No conv bias: the BatchNorm right after it has one.
            return [nn.Conv2d(width_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]

        return nn.Sequential(
            *block(input_shape[0], c),
            *block(c, c),
            nn.MaxPool2d(2, ceil_mode=True),
            *block(c, 2 * c),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(self.params.dropout),
            nn.Linear(2 * c, num_classes),
        )
