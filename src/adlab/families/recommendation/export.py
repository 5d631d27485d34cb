"""The exported recommender: user encoder and item vectors in one graph, the catalogue beside it.

Graph inputs: `history (batch, L) int64` item indices (1-based, oldest first, left-padded with 0) and,
when the data has user attributes, `user_features (batch, U) int64`. Outputs: `scores (batch, items + 1)`
float32 (column 0 is padding) and `user_vector (batch, dim)`. `preprocessing.json` carries what the caller
does around it: item ids <-> indices, titles, the item vectors (for "similar items"), train popularity
(the fallback for an empty history), and the rule that seen items are excluded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from adlab.harness.checkpoints import StoredRun
from adlab.harness.exporting import ExportSpec, preprocessing_header


class RecommenderGraph(nn.Module):
    """`(history, [user_features]) -> (scores, user_vector)` with the item vectors as a constant."""

    def __init__(self, net: nn.Module, user_attributes: int):
        super().__init__()
        self.net = net
        self.user_attributes = user_attributes
        with torch.no_grad():
            self.register_buffer("item_vectors", net.item_vectors().detach().clone())

    def forward(self, history: Tensor, user_features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if user_features is None:
            user_features = torch.zeros(history.shape[0], self.user_attributes, dtype=torch.int64)
        user = self.net(history, user_features)
        return user @ self.item_vectors.T, user


def recommender_spec(module: Any, stored: StoredRun) -> ExportSpec:
    """The spec `adlab-export` writes for a `RecommendationModule` rebuilt from `stored`."""
    meta = module.meta
    catalogue = module.require_catalogue()
    attributes = len(meta.user_attributes)
    graph = RecommenderGraph(module.net.eval(), attributes).eval()
    length = meta.max_length
    history = torch.zeros(2, length, dtype=torch.int64)
    first = catalogue.history(1)[-length:] or [1]
    history[0, -len(first) :] = torch.tensor(first)
    history[1, -1] = 1
    inputs: tuple[Tensor, ...] = (history,)
    names = ["history"]
    if attributes:
        inputs += (torch.tensor([catalogue.user_codes[0]] * 2, dtype=torch.int64),)
        names.append("user_features")
    preprocessing = {
        **preprocessing_header(meta.kind),
        "task": "recommendation",
        "inputs": {
            "history": f"(batch, {length}) int64: item indices (1-based), oldest first, left-padded with 0",
            **({"user_features": f"(batch, {attributes}) int64: user attribute codes"} if attributes else {}),
        },
        "outputs": {
            "scores": f"(batch, {meta.items + 1}) float32: column i scores item index i; column 0 is padding",
            "user_vector": "(batch, dim) float32",
        },
        "max_length": length,
        "item_ids": catalogue.item_ids,
        "item_titles": catalogue.item_titles,
        "popularity": catalogue.popularity,
        "item_vectors": graph.item_vectors[1:].tolist(),
        "user_attributes": list(meta.user_attributes),
        "vocabularies": catalogue.vocabularies,
        "in_graph": ["the user encoder", "the item vectors and the dot products"],
        "outside_graph": [
            "item id -> index (1-based, item_ids order); an unknown item id is ignored and counted",
            "the latest max_length items, left-padded with 0",
            "items in the history are excluded from the ranking; an empty history gets the most popular items",
        ],
    }
    return ExportSpec(graph, inputs, names, ["scores", "user_vector"], preprocessing)
