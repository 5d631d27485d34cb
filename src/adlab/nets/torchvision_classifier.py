"""Any torchvision classification architecture, by name, built without downloaded weights."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from adlab.errors import AdlabError

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
