"""A tabular MLP: categorical embeddings and scaled numeric features into a stack of dense layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def embedding_size(cardinality: int, cap: int) -> int:
    """A common rule of thumb: about half the cardinality, capped."""
    return max(1, min(cap, (cardinality + 1) // 2))


class TabularMLP(nn.Module):
    """Embeddings for categorical columns, concatenated with numeric columns, then an MLP to one logit.

    Args:
        cardinalities: vocabulary size of each categorical column (index 0 = unknown bucket).
        numeric_features: number of numeric columns.
        hidden_sizes: widths of the hidden layers.
        dropout: dropout after every hidden layer (and on the input).
        embedding_dim: cap on each categorical embedding's width.
        outputs: number of logits (1 for a binary scorer).

    Shapes: `categorical (batch, n_cat) int64`, `numeric (batch, n_num) float32` -> `(batch, outputs)`.
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        numeric_features: int,
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.2,
        embedding_dim: int = 8,
        outputs: int = 1,
    ):
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(cardinality, embedding_size(cardinality, embedding_dim))
            for cardinality in cardinalities
        )
        width = sum(e.embedding_dim for e in self.embeddings) + numeric_features
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        parts = [embedding(categorical[:, i]) for i, embedding in enumerate(self.embeddings)]
        return self.layers(torch.cat([*parts, numeric], dim=1))
