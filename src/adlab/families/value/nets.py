"""The value network: an MLP over calibration features, optionally with a GRU over the spend sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ValueNet(nn.Module):
    """Calibration features (and the spend sequence) -> head outputs.

    Args:
        features: calibration features per customer (F).
        outputs: head width: 3 for ZILN (logit, mu, raw sigma), 1 for MSE.
        hidden_sizes: widths of the MLP's hidden layers ([] is a linear model).
        dropout: dropout after each hidden layer.
        sequence_channels: channels per period of the spend sequence; 0 reads no sequence.
        sequence_hidden: width of the GRU's state (its last state joins the features).

    `forward(features (batch, F) float32, sequence (batch, periods, channels) float32 | None)` returns
    `(batch, outputs)` float32.
    """

    def __init__(
        self,
        features: int,
        outputs: int,
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        sequence_channels: int = 0,
        sequence_hidden: int = 16,
    ):
        super().__init__()
        self.encoder = (
            nn.GRU(sequence_channels, sequence_hidden, batch_first=True) if sequence_channels else None
        )
        width = features + (sequence_hidden if sequence_channels else 0)
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, outputs)

    def forward(self, features: Tensor, sequence: Tensor | None = None) -> Tensor:
        if self.encoder is not None:
            _, state = self.encoder(sequence)
            features = torch.cat([features, state[-1]], dim=1)
        return self.head(self.body(features))
