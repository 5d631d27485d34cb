"""The imagery family's classifiers: `SmallCNN` (fast, VGG-style; the default), `SmallResNet` (stronger)
and any torchvision architecture by name (built without downloaded weights)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from adlab.errors import AdlabError


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (no bias: batch norm follows), batch norm, ReLU; keeps the spatial size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Blocks of 3x3 conv-BN-ReLU layers each ending in a 2x2 max-pool, then a dense hidden layer and a linear head.

    The default (widths 32-64-128, one convolution per block, a 128-unit hidden layer on the 3x3 pooled
    map) has 0.24M parameters and trains on Fashion-MNIST in well under a minute per epoch on two CPU
    cores. The final map is average-pooled to `pooled_size` x `pooled_size`, so any image size works
    (28x28 images give exactly 3x3 after three blocks, no pooling needed).

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        num_classes: number of classes.
        widths: output channels of each block; each block halves the spatial size.
        convs_per_block: convolutions in each block.
        pooled_size: side of the final feature map fed to the dense layer.
        hidden: units of the dense hidden layer (0: a linear head on globally pooled features).
        dropout: dropout before the output layer.

    Shapes: `(batch, in_channels, h, w) float32` -> logits `(batch, num_classes)`;
    `features` -> `(batch, hidden)` (the penultimate layer, e.g. for FID).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128),
        convs_per_block: int = 1,
        pooled_size: int = 3,
        hidden: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_block):
                layers.append(conv_bn_relu(channels, width))
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        side = pooled_size if hidden else 1
        embedding: list[nn.Module] = [nn.AdaptiveAvgPool2d(side), nn.Flatten()]
        if hidden:
            embedding += [nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True)]
        self.embedding = nn.Sequential(*embedding)
        self.feature_dim = hidden or channels
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, num_classes))

    def features(self, images: Tensor) -> Tensor:
        """Penultimate activations `(batch, feature_dim)`."""
        return self.embedding(self.body(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


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


log = logging.getLogger(__name__)


class TorchvisionClassifier(nn.Module):
    """A torchvision classification model (`torchvision.models.list_models(module=torchvision.models)`).

    Args:
        in_channels: image channels; grey images are repeated to the three channels these models expect.
        num_classes: number of classes (the model's head is built for it).
        name: architecture name, e.g. "resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny".
        weights_path: optional local file of pretrained weights (a state dict, or a checkpoint holding one
            under "state_dict" or "model"); tensors whose shape differs (the head, for another class
            count) are left at their initialisation.

    Shapes: `(batch, in_channels, h, w) float32` -> logits `(batch, num_classes)`;
    `features` -> `(batch, d)`, the input of the model's last linear layer.
    """

    def __init__(
        self, in_channels: int, num_classes: int, name: str = "resnet18", weights_path: str | None = None
    ):
        super().__init__()
        from torchvision import models

        available = models.list_models(module=models)
        if name not in available:
            raise AdlabError(
                f"model.net.name={name!r}: not a torchvision classification model; e.g. {available[:10]}"
            )
        self.model = models.get_model(name, weights=None, num_classes=num_classes)
        self.in_channels = in_channels
        linears = [module for module in self.model.modules() if isinstance(module, nn.Linear)]
        if not linears:
            raise AdlabError(f"model.net.name={name!r}: has no linear head to take features from")
        self._head = linears[-1]
        self.feature_dim = self._head.in_features
        if weights_path:
            self.load_weights(weights_path)

    def load_weights(self, path: str | Path) -> None:
        """Load matching tensors from a local weights file; `AdlabError` when none match."""
        path = Path(path)
        if not path.is_file():
            raise AdlabError(f"model.net.weights_path={path}: file not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a file that is not a state dict
            raise AdlabError(f"model.net.weights_path={path}: not a PyTorch weights file ({error})") from None
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        own = self.model.state_dict()
        matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not matching:
            raise AdlabError(
                f"model.net.weights_path={path}: no tensor matches the architecture's names and shapes"
            )
        self.model.load_state_dict(matching, strict=False)
        left = len(own) - len(matching)
        if left:
            log.warning("%s: loaded %d tensors; %d keep their initialisation", path, len(matching), left)

    def _rgb(self, images: Tensor) -> Tensor:
        return images.expand(-1, 3, -1, -1) if self.in_channels == 1 else images

    def forward(self, images: Tensor) -> Tensor:
        output = self.model(self._rgb(images))
        # inception-style models return (logits, aux_logits) while training
        return output[0] if isinstance(output, tuple) else output

    def features(self, images: Tensor) -> Tensor:
        """The input of the last linear layer `(batch, d)`."""
        captured: list[Tensor] = []
        handle = self._head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            self.model(self._rgb(images))
        finally:
            handle.remove()
        return captured[-1].flatten(1)
