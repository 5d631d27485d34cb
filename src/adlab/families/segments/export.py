"""The exported segment model: raw calibration features in, each customer's segment and distance to its
centre out, the segments' names beside the graph.

Graph input: `features (batch, F) float32` raw calibration features (the graph scales them). Outputs:
`segment (batch,) int64` (the nearest centre in the embedding, as `SegmentModule.assign`) and `distance
(batch,) float32` (Euclidean distance to it). `preprocessing.json` holds how to compute the input from a
raw purchase log (`adlab.harness.customer_export`) and, under `segments`, the names of the segments.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from adlab.harness.checkpoints import StoredRun
from adlab.harness.customer_export import (
    ScaledFeatures,
    customers_preprocessing,
    example_inputs,
    stored_scaling,
)
from adlab.harness.exporting import ExportSpec

TASK = "customer_segments"


class SegmentGraph(nn.Module):
    """A `SegmentModule` with its feature scaling: raw features -> (nearest segment, distance to it)."""

    def __init__(self, module: nn.Module, scaling: ScaledFeatures):
        super().__init__()
        self.module = module
        self.scaling = scaling
        self.register_buffer("centres", module.centres.detach().clone().float())

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        latent = self.module(self.scaling(features))
        # explicit differences rather than cdist: the same numbers in eager and in the exported graph
        distance = (latent[:, None, :] - self.centres[None, :, :]).pow(2).sum(dim=2).sqrt()
        nearest, segment = torch.min(distance, dim=1)
        return segment, nearest


def segments_spec(module: Any, stored: StoredRun) -> ExportSpec:
    """The spec `adlab-export` writes for a `SegmentModule` of transactions data rebuilt from `stored`."""
    meta, scaling = stored_scaling(stored, "the segments model")
    graph = SegmentGraph(module.eval(), ScaledFeatures(scaling)).eval()
    inputs = example_inputs(scaling, meta, reads_sequence=False)
    outputs = {
        "segment": f"(batch,) int64: the customer's segment, 0 to {module.k - 1} (nearest centre)",
        "distance": "(batch,) float32: Euclidean distance to that centre in the embedding",
    }
    preprocessing = customers_preprocessing(stored, TASK, False, outputs)
    preprocessing["segments"] = {"k": int(module.k), "names": list(module.segment_names)}
    return ExportSpec(graph, inputs, ["features"], list(outputs), preprocessing)
