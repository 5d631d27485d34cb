"""Recommender networks: a SASRec-style causal self-attention encoder and a two-tower model.

Both read a user's latest items `history (batch, L) int64` (oldest first, left-padded with 0) and the
user's attribute codes `user_features (batch, U) int64`, and give:

- `states(history, user_features) -> (batch, L, dim)`: the user's vector after each slot (slot j sees
  slots up to j only), so training predicts the next item at every slot;
- `item_vectors() -> (items + 1, dim)`: one vector per catalogue item (row 0 is padding);
- `forward(history, user_features) -> (batch, dim)`: the vector after the latest item (the last slot).

The score of item i for a user is the dot product of the two vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AttributeEmbedding(nn.Module):
    """The sum of one embedding per categorical attribute: codes `(..., A) int64` -> `(..., dim)`.

    Code 0 (an unknown value) of every attribute maps to zeros; no attributes give zeros.
    """

    def __init__(self, cardinalities: Sequence[int], dim: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(int(c), dim, padding_idx=0) for c in cardinalities)
        self.dim = dim

    def forward(self, codes: Tensor) -> Tensor:
        total = torch.zeros(*codes.shape[:-1], self.dim, device=codes.device)
        for position, table in enumerate(self.tables):
            total = total + table(codes[..., position])
        return total


class ItemTable(nn.Module):
    """Item vectors `(items + 1, dim)`: an id embedding plus, optionally, the item's attribute embeddings.

    The attribute codes `(items + 1, A)` are a buffer filled by `set_codes` before fitting (row 0, padding,
    stays 0), so a checkpoint carries them. With `zero_ids` the id embeddings start at zero: an item no one
    interacted with keeps a vector from its attributes alone.
    """

    def __init__(self, items: int, dim: int, cardinalities: Sequence[int] = (), zero_ids: bool = False):
        super().__init__()
        self.ids = nn.Embedding(items + 1, dim, padding_idx=0)
        if zero_ids:
            nn.init.zeros_(self.ids.weight)
        else:
            nn.init.normal_(self.ids.weight, std=dim**-0.5)
            with torch.no_grad():
                self.ids.weight[0].zero_()
        self.attributes = AttributeEmbedding(cardinalities, dim) if len(cardinalities) else None
        self.register_buffer("codes", torch.zeros(items + 1, len(cardinalities), dtype=torch.int64))

    def set_codes(self, codes: Tensor) -> None:
        """Store every item's attribute codes `(items, A)` (item order, no padding row)."""
        with torch.no_grad():
            self.codes[1:] = codes.to(self.codes)

    def forward(self) -> Tensor:
        vectors = self.ids.weight
        if self.attributes is not None:
            mask = torch.ones(len(vectors), 1, device=vectors.device)
            mask[0] = 0  # padding stays a zero vector
            vectors = vectors + self.attributes(self.codes) * mask
        return vectors


class CausalSelfAttention(nn.Module):
    """One pre-norm transformer block: masked multi-head self-attention, then a feed-forward layer."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.project = nn.Linear(dim, dim)
        self.feed_forward_norm = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = dropout

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """`x (batch, L, dim)`; `allowed (batch, 1, L, L) bool`: which slots each slot attends to."""
        batch, length, dim = x.shape
        q, k, v = (
            self.qkv(self.attention_norm(x))
            .view(batch, length, 3, self.heads, dim // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attention_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.project(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


class SequentialEncoder(nn.Module):
    """SASRec-style encoder (Kang & McAuley 2018, with pre-norm blocks): causal self-attention over the
    item sequence plus a learned embedding of each slot's recency; item vectors are the input embeddings
    (tied), so every catalogue item is scored by one matrix product.

    Args:
        items: catalogue size (without padding).
        max_length: slots of a history.
        user_cardinalities: per user attribute, codes + 1 (used with `user_attributes`).
        item_cardinalities: per item attribute, codes + 1 (used with `item_attributes`).
        dim: width of item vectors and states.
        layers: transformer blocks.
        heads: attention heads (`dim` must divide by it).
        dropout: dropout on embeddings, attention weights and block outputs.
        item_attributes: add each item's attribute embeddings to its id embedding.
        user_attributes: add the user's attribute embeddings to every slot.
    """

    def __init__(
        self,
        items: int,
        max_length: int,
        user_cardinalities: Sequence[int] = (),
        item_cardinalities: Sequence[int] = (),
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        dropout: float = 0.2,
        item_attributes: bool = False,
        user_attributes: bool = False,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not a multiple of heads={heads}")
        self.items = ItemTable(items, dim, item_cardinalities if item_attributes else ())
        self.positions = nn.Embedding(max_length, dim)
        self.users = AttributeEmbedding(user_cardinalities, dim) if user_attributes else None
        self.blocks = nn.ModuleList(CausalSelfAttention(dim, heads, dropout) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.scale = math.sqrt(dim)
        self.register_buffer("causal", torch.ones(max_length, max_length).tril().bool(), persistent=False)

    def item_vectors(self) -> Tensor:
        return self.items()

    def states(self, history: Tensor, user_features: Tensor) -> Tensor:
        length = history.shape[1]
        valid = history > 0
        x = F.embedding(history, self.item_vectors()) * self.scale
        x = x + self.positions.weight[-length:]
        if self.users is not None:
            x = x + self.users(user_features)[:, None, :]
        x = self.dropout(x) * valid[..., None]
        # a slot attends to the real items up to itself, and always to itself (no row is fully masked)
        causal = self.causal[:length, :length]
        allowed = (causal & valid[:, None, :]) | torch.eye(length, dtype=torch.bool, device=history.device)
        allowed = allowed[:, None, :, :]
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)

    def forward(self, history: Tensor, user_features: Tensor) -> Tensor:
        return self.states(history, user_features)[:, -1]


class TwoTowerEncoder(nn.Module):
    """Two towers: a user tower (the mean of the history's item embeddings, the latest item's embedding
    and the user's attributes, through an MLP) and an item tower (id embedding, zero at the start, plus
    attribute embeddings, through a linear layer), so an item without interactions still gets a vector.

    Args:
        items: catalogue size (without padding).
        max_length: slots of a history.
        user_cardinalities: per user attribute, codes + 1.
        item_cardinalities: per item attribute, codes + 1.
        dim: width of the two towers' vectors.
        hidden: width of the user tower's hidden layer.
        dropout: dropout in the user tower.
        user_attributes: feed the user's attributes to the user tower.
        item_attributes: add item attributes in the item tower.
    """

    def __init__(
        self,
        items: int,
        max_length: int,
        user_cardinalities: Sequence[int] = (),
        item_cardinalities: Sequence[int] = (),
        dim: int = 64,
        hidden: int = 256,
        dropout: float = 0.2,
        user_attributes: bool = True,
        item_attributes: bool = True,
    ):
        super().__init__()
        self.history_items = nn.Embedding(items + 1, dim, padding_idx=0)
        self.users = AttributeEmbedding(user_cardinalities, dim) if user_attributes else None
        self.user_tower = nn.Sequential(
            nn.Linear(3 * dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.items = ItemTable(
            items, dim, item_cardinalities if item_attributes else (), zero_ids=item_attributes
        )
        self.item_tower = nn.Linear(dim, dim)

    def item_vectors(self) -> Tensor:
        vectors = self.item_tower(self.items())
        return vectors * (torch.arange(len(vectors), device=vectors.device) > 0)[:, None]

    def states(self, history: Tensor, user_features: Tensor) -> Tensor:
        embedded = self.history_items(history)  # padding embeds to zeros
        counts = (history > 0).cumsum(1).clamp_min(1)[..., None]
        mean = embedded.cumsum(1) / counts  # the mean of the real items up to each slot
        user = torch.zeros_like(mean[:, :1]) if self.users is None else self.users(user_features)[:, None, :]
        return self.user_tower(torch.cat([mean, embedded, user.expand_as(mean)], dim=-1))

    def forward(self, history: Tensor, user_features: Tensor) -> Tensor:
        return self.states(history, user_features)[:, -1]
