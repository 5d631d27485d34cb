"""The segment networks: a tabular autoencoder (numeric columns and categorical embeddings) and the
Student-t soft assignment of DEC (Xie, Girshick & Farhadi 2016) with its sharpened target distribution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(sizes: Sequence[int], last_activation: bool) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (and after the last with `last_activation`)."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(width_in, width_out))
        if last_activation or index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TabularAutoencoder(nn.Module):
    """Numeric columns and categorical embeddings -> a latent vector -> the numeric columns and the
    categories' logits again.

    Args:
        numeric: numeric columns per customer (N).
        cardinalities: per categorical column, its vocabulary size (+1 for the unknown bucket).
        embedding_dim: width of each categorical embedding.
        hidden_sizes: widths of the encoder's hidden layers (the decoder mirrors them).
        latent_dim: width of the embedding the segments are formed in.

    `encode(numeric (batch, N) float32, categorical (batch, C) int64 | None)` -> `(batch, latent_dim)`;
    `decode(latent)` -> `(numeric (batch, N), [logits (batch, cardinality) per categorical column])`.
    """

    def __init__(
        self,
        numeric: int,
        cardinalities: Sequence[int] = (),
        embedding_dim: int = 4,
        hidden_sizes: Sequence[int] = (64, 32),
        latent_dim: int = 8,
    ):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(int(c), embedding_dim) for c in cardinalities)
        width = numeric + embedding_dim * len(cardinalities)
        self.encoder = mlp([width, *hidden_sizes, latent_dim], last_activation=False)
        self.decoder = mlp([latent_dim, *reversed(list(hidden_sizes))], last_activation=True)
        last = hidden_sizes[0] if hidden_sizes else latent_dim
        self.numeric_out = nn.Linear(last, numeric) if numeric else None
        self.categorical_out = nn.ModuleList(nn.Linear(last, int(c)) for c in cardinalities)

    def encode(self, numeric: Tensor, categorical: Tensor | None = None) -> Tensor:
        parts = [numeric]
        if categorical is not None:
            parts += [embedding(categorical[:, i]) for i, embedding in enumerate(self.embeddings)]
        return self.encoder(torch.cat(parts, dim=1))

    def decode(self, latent: Tensor) -> tuple[Tensor | None, list[Tensor]]:
        hidden = self.decoder(latent)
        numeric = self.numeric_out(hidden) if self.numeric_out is not None else None
        return numeric, [head(hidden) for head in self.categorical_out]

    def reconstruction_loss(self, latent: Tensor, numeric: Tensor, categorical: Tensor | None) -> Tensor:
        """Mean squared error of the numeric columns plus the mean cross-entropy of the categories."""
        numeric_out, logits = self.decode(latent)
        loss = F.mse_loss(numeric_out, numeric) if numeric_out is not None else latent.new_zeros(())
        for i, column_logits in enumerate(logits):
            loss = loss + F.cross_entropy(column_logits, categorical[:, i]) / max(len(logits), 1)
        return loss


class AutoencoderEnsemble(nn.Module):
    """Several autoencoders over the same inputs, each from its own initialisation, trained side by side: the
    embedding is their embeddings concatenated, the reconstruction loss their mean.

    Why: one autoencoder's embedding depends on its initialisation, and k-means on it can cut the customers
    differently from seed to seed; distances in the concatenation sum over the members, so the segments
    follow what the members agree on (a consensus inside one run).

    `encode(numeric, categorical)` -> `(batch, members x latent_dim)`; `reconstruction_loss(latent, numeric,
    categorical)` splits the latent back into the members' parts.
    """

    def __init__(self, members: Sequence[TabularAutoencoder]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def encode(self, numeric: Tensor, categorical: Tensor | None = None) -> Tensor:
        return torch.cat([member.encode(numeric, categorical) for member in self.members], dim=1)

    def reconstruction_loss(self, latent: Tensor, numeric: Tensor, categorical: Tensor | None) -> Tensor:
        """The members' mean reconstruction loss, each from its own slice of `latent`."""
        parts = latent.chunk(len(self.members), dim=1)
        losses = [
            m.reconstruction_loss(part, numeric, categorical)
            for m, part in zip(self.members, parts, strict=True)
        ]
        return torch.stack(losses).mean()


def soft_assignment(latent: Tensor, centres: Tensor, alpha: float = 1.0) -> Tensor:
    """DEC's Student-t kernel: `q_ij ∝ (1 + |z_i - mu_j|² / alpha)^(-(alpha + 1) / 2)`, `(batch, k)`, rows sum to 1."""
    distance = torch.cdist(latent, centres).pow(2)
    q = (1.0 + distance / alpha).pow(-(alpha + 1.0) / 2.0)
    return q / q.sum(dim=1, keepdim=True)


def target_distribution(q: Tensor, frequency: Tensor | None = None) -> Tensor:
    """DEC's sharpened target `p_ij ∝ q_ij² / f_j`, with `f_j` the soft segment sizes (of the whole train
    split when given, else of `q`'s rows); rows sum to 1."""
    frequency = q.sum(dim=0) if frequency is None else frequency
    weight = q.pow(2) / frequency.clamp_min(1e-12)
    return weight / weight.sum(dim=1, keepdim=True)


def batch_inputs(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
    """`(numeric (rows, N) float32, categorical (rows, C) int64 | None)` of a transactions or tabular batch."""
    if "features" in batch:
        return batch["features"].float(), None
    categorical = batch.get("categorical")
    return batch["numeric"].float(), categorical if categorical is not None and categorical.shape[1] else None
