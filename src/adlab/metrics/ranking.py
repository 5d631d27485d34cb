"""Targeting metrics: how many buyers a campaign reaches when it contacts the top-scored share of customers."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def top_fraction_hits(scores: Tensor, targets: Tensor, fraction: float) -> Tensor:
    """Buyers among the `ceil(fraction * n)` highest scores.

    Ties at the cut are broken by the order of the rows (a stable sort), so the figure is reproducible.
    On the CoIL 2000 test set (4000 customers) `fraction=0.2` gives the official "buyers in the top 800".

    Args:
        scores: (n,) float scores, higher = more likely to buy.
        targets: (n,) 0/1 labels.
        fraction: share of customers contacted, in (0, 1].
    """
    k = math.ceil(fraction * scores.numel())
    order = torch.sort(scores.float(), descending=True, stable=True).indices[:k]
    return targets.float()[order].sum()


class TopFractionHits(Metric):
    """Buyers among the top `fraction` of scored customers (a count), e.g. `top20_hits`."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.fraction = fraction
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, targets: Tensor) -> None:
        self.scores.append(scores.detach().flatten().float())
        self.targets.append(targets.detach().flatten().float())

    def compute(self) -> Tensor:
        return top_fraction_hits(dim_zero_cat(self.scores), dim_zero_cat(self.targets), self.fraction)


class TopFractionCapture(TopFractionHits):
    """Share of all buyers found in the top `fraction` of scored customers, e.g. `top20_capture`."""

    def compute(self) -> Tensor:
        targets = dim_zero_cat(self.targets)
        hits = top_fraction_hits(dim_zero_cat(self.scores), targets, self.fraction)
        return hits / targets.sum().clamp_min(1)


def cumulative_gains(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gains curve: share of customers contacted (best scores first) vs share of all buyers reached.

    Returns `(contacted (n + 1,), captured (n + 1,))`, both starting at 0 and ending at 1; the lift at a
    depth is `captured / contacted`. Ties are broken by row order, as in `top_fraction_hits`.
    """
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    hits = np.concatenate([[0.0], np.cumsum(np.asarray(targets, dtype=float)[order])])
    contacted = np.arange(len(hits)) / max(len(hits) - 1, 1)
    return contacted, hits / max(hits[-1], 1.0)


def decile_table(scores: np.ndarray, targets: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Customers, buyers, response rate, lift and cumulative capture per score decile (best decile first)."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    targets = np.asarray(targets, dtype=float)[order]
    base_rate = targets.mean() if len(targets) else 0.0
    rows, captured = [], 0.0
    for decile, part in enumerate(np.array_split(targets, bins), start=1):
        buyers = float(part.sum())
        captured += buyers
        rate = buyers / len(part) if len(part) else 0.0
        rows.append(
            {
                "decile": decile,
                "customers": int(len(part)),
                "buyers": int(buyers),
                "response_rate": rate,
                "lift": rate / base_rate if base_rate else float("nan"),
                "cumulative_capture": captured / targets.sum() if targets.sum() else float("nan"),
            }
        )
    return rows


def score_deciles(scores: np.ndarray, bins: int = 10) -> np.ndarray:
    """Each row's score decile `(n,) int64` in 1..bins, 1 holding the highest scores: the rows sorted by
    score (ties by row order) and cut into `bins` near-equal parts, as `decile_table` cuts them."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    deciles = np.empty(len(order), dtype=np.int64)
    for decile, part in enumerate(np.array_split(order, bins), start=1):
        deciles[part] = decile
    return deciles
