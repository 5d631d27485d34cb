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
NUMERIC_EMBEDDINGS = (None, "none", "periodic", "piecewise_linear")
# exported numeric embeddings of at most this many columns use a block-diagonal weight (see forward)
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


class FeatureWiseEmbedding(nn.Module):
    """Numeric embeddings that encode each column into a few values, then map them per column, per member,
    through a linear layer and a ReLU: `(batch, n_num)` -> `(members, batch, n_num * width)`.

    Subclasses define `encode`: `(batch, n_num)` -> `(members, batch, n_num, inputs)`, and call
    `add_linear` in `__init__`, which adds `weight (members, n_num, inputs, width)` and
    `bias (members, 1, n_num, width)`.
    """

    def add_linear(self, members: int, features: int, inputs: int, width: int) -> None:
        self.weight = nn.Parameter(torch.empty(members, features, inputs, width))
        self.bias = nn.Parameter(torch.zeros(members, 1, features, width))
        nn.init.uniform_(self.weight, -1 / math.sqrt(inputs), 1 / math.sqrt(inputs))

    def encode(self, numeric: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, numeric: Tensor) -> Tensor:
        encoded = self.encode(numeric)
        members, features, width_in, width = self.weight.shape
        if torch.onnx.is_in_onnx_export() and features <= BLOCK_DIAGONAL_MAX_FEATURES:
            # ONNX Runtime runs this einsum as one tiny GEMM per member and feature, whose call overhead
            # dominates a one-row request; a block-diagonal weight makes it one GEMM per member for
            # `features` times the arithmetic, which pays for a few columns (memory stays per row)
            eye = torch.eye(features, dtype=self.weight.dtype, device=self.weight.device)
            block = eye[None, :, None, :, None] * self.weight[:, :, :, None, :]
            block = block.reshape(members, features * width_in, features * width)
            embedded = torch.matmul(encoded.flatten(2), block).unflatten(2, (features, width))
        else:
            embedded = torch.einsum("mbfp,mfpw->mbfw", encoded, self.weight)
        return torch.relu(embedded + self.bias).flatten(2)

    def floats_per_row(self) -> int:
        """About how many floats one row occupies inside the embedding, per member."""
        _, features, width_in, width = self.weight.shape
        # the encoding's intermediates (about four per encoded value) and the embedded output
        return features * (4 * width_in + 2 * width)


class PeriodicEmbedding(FeatureWiseEmbedding):
    """Periodic numeric embeddings (Gorishniy et al., 2022, "PLR"): x -> ReLU(W [sin 2πcx, cos 2πcx]).

    Frequencies `c` are learned per member and feature, initialised from N(0, sigma).
    """

    def __init__(self, members: int, features: int, frequencies: int, width: int, sigma: float):
        super().__init__()
        # frequencies first, as they always were: a seed draws the same network, and the parameter order
        # (which a checkpoint's optimizer state follows) stays frequencies, weight, bias
        self.frequencies = nn.Parameter(torch.randn(members, 1, features, frequencies) * sigma)
        self.add_linear(members, features, 2 * frequencies, width)

    def encode(self, numeric: Tensor) -> Tensor:
        angles = 2 * math.pi * self.frequencies * numeric[None, :, :, None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class PiecewiseLinearEmbedding(FeatureWiseEmbedding):
    """Piecewise-linear encoding (Gorishniy et al., 2022, "PLE", quantile bins) followed by a linear layer
    and a ReLU: bin t of a column encodes x as `clamp((x - e_t) / (e_{t+1} - e_t), 0, 1)`, so the bins
    below x read 1, those above read 0 and x's own bin its position inside it.

    The edges are the distinct quantiles of the training rows at 0, 1/bins, ..., 1 (`fit`; observed
    values, so the edges of a discrete code sit on its levels), kept per member in the buffer
    `edges (members, 1, n_num, bins + 1)`, so networks fitted on different rows can be stacked. Quantiles
    that coincide merge their bins: a discrete code whose levels each hold at least 1/bins of the rows
    gets one bin per gap between levels (a thermometer), while levels rarer than that share a bin with
    their neighbours (a code that is 90% zeros may get a single bin from 0 to its maximum). Unused bins
    read 0; values outside the training range saturate.
    """

    def __init__(self, members: int, features: int, bins: int, width: int):
        if bins < 1:
            raise ValueError(f"bins={bins}: expected at least 1")
        super().__init__()
        self.add_linear(members, features, bins, width)
        # until fitted: the quantiles of a standard normal, the distribution of a standardised column
        normal = torch.distributions.Normal(0.0, 1.0)
        inner = normal.icdf(torch.linspace(0, 1, bins + 1)[1:-1])
        default = torch.cat([torch.tensor([-3.0]), inner, torch.tensor([3.0])])
        self.register_buffer("edges", default.expand(members, 1, features, bins + 1).clone())
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, numeric: Tensor) -> None:
        """Set every member's edges from the training rows `numeric (rows, n_num)` (finite values)."""
        if not bool(torch.isfinite(numeric).all()):
            raise ValueError("piecewise-linear bins: the training rows hold NaN or infinite values")
        bins = self.edges.shape[-1] - 1
        levels = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
        edges = torch.empty(self.edges.shape[2:], dtype=torch.float64)
        for column, values in enumerate(numeric.detach().cpu().double().T):
            # observed values as edges ("lower"): the edges of a discrete code sit on its levels
            unique = torch.unique(torch.quantile(values, levels, interpolation="lower").to(self.edges.dtype))
            edges[column, : len(unique)] = unique
            edges[column, len(unique) :] = unique[-1]  # zero-width bins: read 0
        self.edges.copy_(edges.to(self.edges)[None, None].expand_as(self.edges))
        self.fitted.fill_(True)

    def encode(self, numeric: Tensor) -> Tensor:
        left, right = self.edges[..., :-1], self.edges[..., 1:]
        width = right - left
        used = width > 0
        position = (numeric[None, :, :, None] - left) / torch.where(used, width, torch.ones_like(width))
        return position.clamp(0, 1) * used.to(position.dtype)


class TabularMLP(nn.Module):
    """K members, each: embeddings of categorical columns, numeric columns (raw, or periodic or
    piecewise-linear embedded),
    then a stack of dense layers to one logit per output.

    Args:
        cardinalities: vocabulary size of each categorical column (index 0 = unknown bucket).
        numeric_features: number of numeric columns.
        hidden_sizes: widths of the hidden layers (empty: a linear model on the embeddings).
        dropout: dropout after every hidden layer (and on the input).
        embedding_dim: cap on each categorical embedding's width.
        outputs: number of logits per member (1 for a binary scorer).
        members: ensemble size K; members share nothing but the inputs.
        numeric_embedding: None (scaled values as they are), "periodic" or "piecewise_linear" (quantile
            bins; their edges are set by `PiecewiseLinearEmbedding.fit` on the training rows).
        numeric_embedding_dim: width of each numeric feature's embedding.
        frequencies: number of learned frequencies per numeric feature (periodic).
        frequency_sigma: standard deviation of the initial frequencies (periodic).
        bins: number of quantile bins per numeric feature (piecewise_linear).

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
        bins: int = 8,
    ):
        super().__init__()
        if numeric_embedding not in NUMERIC_EMBEDDINGS:
            raise ValueError(f"numeric_embedding={numeric_embedding!r}: expected one of {NUMERIC_EMBEDDINGS}")
        self.members = members
        self.embeddings = nn.ParameterList(
            nn.Parameter(torch.randn(members, cardinality, embedding_size(cardinality, embedding_dim)))
            for cardinality in cardinalities
        )
        self.numeric_embedding: FeatureWiseEmbedding | None = None
        if numeric_embedding == "periodic" and numeric_features:
            self.numeric_embedding = PeriodicEmbedding(
                members, numeric_features, frequencies, numeric_embedding_dim, frequency_sigma
            )
        elif numeric_embedding == "piecewise_linear" and numeric_features:
            self.numeric_embedding = PiecewiseLinearEmbedding(
                members, numeric_features, bins, numeric_embedding_dim
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
        numeric embedding's intermediates and outputs, the concatenated inputs and the dense layers'
        outputs. Exporters size their graph calls by it."""
        numeric = self.numeric_embedding
        numeric_floats = numeric.floats_per_row() if numeric is not None else 0
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
