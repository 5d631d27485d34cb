"""`SmallCNN`: a fast VGG-style classifier for small images (the imagery family's default)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (no bias: batch norm follows), batch norm, ReLU; keeps the spatial size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Blocks of 3x3 conv-BN-ReLU layers each ending in a 2x2 max-pool, global average pool, linear head.

    With widths 32-64-128 and two convolutions per block it has 0.29M parameters and trains on
    Fashion-MNIST at about an epoch per half-minute on two CPU cores.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        num_classes: number of classes.
        widths: output channels of each block; each block halves the spatial size.
        convs_per_block: convolutions in each block.
        dropout: dropout before the linear head.

    Shapes: `(batch, in_channels, h, w) float32` -> logits `(batch, num_classes)`;
    `features` -> `(batch, widths[-1])` (the penultimate layer, e.g. for FID).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128),
        convs_per_block: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_block):
                layers.append(conv_bn_relu(channels, width))
                channels = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.body = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        self.feature_dim = channels

    def features(self, images: Tensor) -> Tensor:
        """Penultimate activations `(batch, widths[-1])`."""
        return self.pool(self.body(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))
