"""How an image classifier is exported: pixel scaling, normalisation and a softmax inside the graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adlab.harness.checkpoints import StoredRun
from adlab.harness.exporting import ExportSpec, preprocessing_header


class ImageScoringGraph(nn.Module):
    """An image classifier with its input scaling: uint8 images in, class probabilities out.

    Args:
        classifier: a module with `prepare(images)` (scale and normalise uint8 images, as in evaluation)
            and `forward(prepared) -> logits (batch, classes)` (an `ImageryModule`).

    Shapes: `image (batch, c, h, w) uint8`, already resized to the training image size ->
    `(batch, classes) float32` probabilities.
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, image: Tensor) -> Tensor:
        return torch.softmax(self.classifier(self.classifier.prepare(image)), dim=-1)


def image_classifier_spec(model: nn.Module, stored: StoredRun) -> ExportSpec:
    """An image classifier with scaling and normalisation in the graph; sizes and classes in the JSON."""
    meta = stored.meta
    shape = (int(meta.channels), *(int(size) for size in meta.image_size))
    generator = torch.Generator().manual_seed(0)
    example = (torch.randint(0, 256, (8, *shape), dtype=torch.uint8, generator=generator),)
    preprocessing = {
        **preprocessing_header("images"),
        "classes": list(meta.classes),
        "class_keys": list(meta.class_keys or meta.classes),
        "channels": shape[0],
        "image_size": list(shape[1:]),
        "mean": meta.mean,
        "std": meta.std,
        "inputs": {"image": f"(batch, {shape[0]}, {shape[1]}, {shape[2]}) uint8, pixel values 0-255"},
        "in_graph": ["scaling to [0, 1] and per-channel normalisation (mean, std)", "softmax"],
        "outside_graph": [f"decoding and resizing to {shape[1]}x{shape[2]} with {shape[0]} channel(s)"],
    }
    return ExportSpec(ImageScoringGraph(model).eval(), example, ["image"], ["probabilities"], preprocessing)
