"""`SmallResNet`: a ResNet for small images (3x3 stem, no early down-sampling), the imagery family's stronger net."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adlab.errors import AdlabError


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (1x1 conv-BN when the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # each residual branch starts as the identity: deep nets then train fast from the first step
        nn.init.zeros_(self.bn2.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet sized for 28-64 pixel images: a 3x3 stem at full resolution, stages that halve the size.

    The default (widths 64-128-256, two blocks per stage) has 2.8M parameters.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        num_classes: number of classes.
        widths: channels of each stage; every stage after the first starts with a stride-2 block.
        blocks: residual blocks per stage (same length as `widths`).
        dropout: dropout before the linear head.

    Shapes: `(batch, in_channels, h, w) float32` -> logits `(batch, num_classes)`;
    `features` -> `(batch, widths[-1])` (the penultimate layer, e.g. for FID).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256),
        blocks: Sequence[int] = (2, 2, 2),
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(widths) != len(blocks):
            raise AdlabError(f"model.net: widths {list(widths)} and blocks {list(blocks)} differ in length")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        channels = widths[0]
        for position, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for index in range(count):
                stride = 2 if position > 0 and index == 0 else 1
                stages.append(BasicBlock(channels, width, stride))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        self.feature_dim = channels

    def features(self, images: Tensor) -> Tensor:
        """Penultimate activations `(batch, widths[-1])`."""
        return torch.flatten(self.stages(self.stem(images)).mean(dim=(2, 3)), 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))
