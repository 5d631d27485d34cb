"""Tabular MLPs: categorical embeddings and scaled numeric features into dense layers, K members at once.

An ensemble of K small networks cuts the variance that dominates small, rare-positive tables such as
CoIL 2000. The K members are evaluated in one batched pass (every weight carries a leading member
dimension), so an ensemble of 16 costs little more than one network on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

# "none" is null spelled as a string (Hydra sweep choices cannot hold null)
NUMERIC_EMBEDDINGS = (None, "none", "periodic")
# exported periodic embeddings of at most this many columns use a block-diagonal weight (see forward)
BLOCK_DIAGONAL_MAX_FEATURES = 32


def embedding_size(cardinality: int, cap: int) -> int:
    """A common rule of thumb: about half the cardinality, capped."""
    return max(1, min(cap, (cardinality + 1) // 2))


class MemberLinear(nn.Module):
    """K independent linear layers: `(members, batch, in) -> (members, batch, out)`."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        # the default nn.Linear initialisation, drawn independently for every member
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class PeriodicEmbedding(nn.Module):
    """Periodic numeric embeddings (Gorishniy et al., 2022, "PLR"): x -> ReLU(W [sin 2πcx, cos 2πcx]).

    Frequencies `c` are learned per member and feature, initialised from N(0, sigma).
    Shapes: `(batch, n_num)` -> `(members, batch, n_num * width)`.
    """

    def __init__(self, members: int, features: int, frequencies: int, width: int, sigma: float):
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(members, 1, features, frequencies) * sigma)
        self.weight = nn.Parameter(torch.empty(members, features, 2 * frequencies, width))
        self.bias = nn.Parameter(torch.zeros(members, 1, features, width))
        nn.init.uniform_(self.weight, -1 / math.sqrt(2 * frequencies), 1 / math.sqrt(2 * frequencies))

    def forward(self, numeric: Tensor) -> Tensor:
        angles = 2 * math.pi * self.frequencies * numeric[None, :, :, None]
        periodic = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        members, features, width_in, width = self.weight.shape
        if torch.onnx.is_in_onnx_export() and features <= BLOCK_DIAGONAL_MAX_FEATURES:
            # ONNX Runtime runs this einsum as one tiny GEMM per member and feature, whose call overhead
            # dominates a one-row request; a block-diagonal weight makes it one GEMM per member for
            # `features` times the arithmetic, which pays for a few columns (memory stays per row)
            eye = torch.eye(features, dtype=self.weight.dtype, device=self.weight.device)
            block = eye[None, :, None, :, None] * self.weight[:, :, :, None, :]
            block = block.reshape(members, features * width_in, features * width)
            embedded = torch.matmul(periodic.flatten(2), block).unflatten(2, (features, width))
        else:
            embedded = torch.einsum("mbfp,mfpw->mbfw", periodic, self.weight)
        return torch.relu(embedded + self.bias).flatten(2)


class TabularMLP(nn.Module):
    """K members, each: embeddings of categorical columns, numeric columns (raw or periodic-embedded),
    then a stack of dense layers to one logit per output.

    Args:
        cardinalities: vocabulary size of each categorical column (index 0 = unknown bucket).
        numeric_features: number of numeric columns.
        hidden_sizes: widths of the hidden layers (empty: a linear model on the embeddings).
        dropout: dropout after every hidden layer (and on the input).
        embedding_dim: cap on each categorical embedding's width.
        outputs: number of logits per member (1 for a binary scorer).
        members: ensemble size K; members share nothing but the inputs.
        numeric_embedding: None (scaled values as they are) or "periodic".
        numeric_embedding_dim: width of each numeric feature's periodic embedding.
        frequencies: number of learned frequencies per numeric feature.
        frequency_sigma: standard deviation of the initial frequencies.

    Shapes: `categorical (batch, n_cat) int64`, `numeric (batch, n_num) float32` ->
    `(members, batch, outputs)` logits of every member.
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        numeric_features: int,
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.2,
        embedding_dim: int = 8,
        outputs: int = 1,
        members: int = 1,
        numeric_embedding: str | None = None,
        numeric_embedding_dim: int = 4,
        frequencies: int = 8,
        frequency_sigma: float = 0.1,
    ):
        super().__init__()
        if numeric_embedding not in NUMERIC_EMBEDDINGS:
            raise ValueError(f"numeric_embedding={numeric_embedding!r}: expected one of {NUMERIC_EMBEDDINGS}")
        self.members = members
        self.embeddings = nn.ParameterList(
            nn.Parameter(torch.randn(members, cardinality, embedding_size(cardinality, embedding_dim)))
            for cardinality in cardinalities
        )
        self.numeric_embedding = (
            PeriodicEmbedding(members, numeric_features, frequencies, numeric_embedding_dim, frequency_sigma)
            if numeric_embedding == "periodic" and numeric_features
            else None
        )
        numeric_width = numeric_features * (numeric_embedding_dim if self.numeric_embedding else 1)
        width = sum(table.shape[-1] for table in self.embeddings) + numeric_width
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        for hidden in hidden_sizes:
            layers += [MemberLinear(members, width, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(MemberLinear(members, width, outputs))
        self.layers = nn.Sequential(*layers)

    def activation_floats_per_row(self) -> int:
        """About how many floats one scored row occupies at once inside the network (all members): the
        periodic embedding's angles, sines, cosines and outputs, the concatenated inputs and the dense
        layers' outputs. Exporters size their graph calls by it."""
        numeric = self.numeric_embedding
        if numeric is not None:
            _, features, width_in, width = numeric.weight.shape
            # angles, sin, cos (frequencies each), their concatenation and the embedded output
            numeric_floats = features * (4 * width_in + 2 * width)
        else:
            numeric_floats = 0
        dense = sum(
            layer.weight.shape[1] + layer.weight.shape[2]
            for layer in self.layers
            if isinstance(layer, MemberLinear)
        )
        return self.members * (numeric_floats + 2 * dense)

    def forward(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        # every member's rows at once: (members, batch, width); index_select exports as one Gather where
        # table[:, index] costs a GatherND and two Transposes
        parts = [table.index_select(1, categorical[:, i]) for i, table in enumerate(self.embeddings)]
        if self.numeric_embedding is not None:
            parts.append(self.numeric_embedding(numeric))
        else:
            parts.append(numeric.unsqueeze(0).expand(self.members, -1, -1))
        return self.layers(torch.cat(parts, dim=-1))
