"""Full-catalogue ranking metrics of next-item recommendation (no sampled negatives).

Every catalogue item is scored for every example; the items the user had before the target (`seen`) and
the padding index are excluded; the target's rank is the number of other items scoring at least as high
(ties count against the model, so a constant scorer ranks last, not first). From the ranks:

- `hr_at_10`: share of examples whose target is in the top 10;
- `ndcg_at_10`: mean of 1 / log2(rank + 2) over examples with rank < 10 (0 otherwise; one relevant item);
- `mrr`: mean of 1 / (rank + 1) over the whole ranking;
- `coverage_at_10`: share of the catalogue in at least one example's top 10;
- `mean_popularity_at_10`: mean train interactions of a top-10 item (lower: less popularity-bound).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

TOP_K = 10
METRICS = ("hr_at_10", "ndcg_at_10", "mrr", "coverage_at_10", "mean_popularity_at_10")


def exclude_seen(scores: Tensor, seen: Tensor | None) -> Tensor:
    """Scores `(rows, items + 1)` with the padding column and each row's `seen (rows, S)` items at -inf
    (a copy)."""
    scores = scores.float().clone()
    scores[:, 0] = -math.inf
    if seen is not None and seen.numel():
        scores.scatter_(1, seen, -math.inf)
    return scores


def target_ranks(scores: Tensor, target: Tensor) -> Tensor:
    """0-based rank `(rows,)` int64 of each row's target: the other items scoring at least as high."""
    target_scores = scores.gather(1, target[:, None])
    return (scores >= target_scores).sum(1) - 1


class RankingMetrics(Metric):
    """Accumulates the metrics above over batches of scored examples (summed states: exact under DDP).

    Args:
        items: catalogue size (without padding).
    """

    full_state_update = False

    def __init__(self, items: int):
        super().__init__()
        for name in ("hits", "ndcg", "reciprocal_rank", "examples", "popularity_sum"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("recommended", torch.zeros(items + 1, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: Tensor, target: Tensor, popularity: Tensor) -> None:
        """`scores (rows, items + 1)` with seen items already excluded (`exclude_seen`); `target (rows,)`;
        `popularity (items + 1,)` train interactions of every item (index 0: padding)."""
        ranks = target_ranks(scores, target).double()
        top = scores.topk(min(TOP_K, scores.shape[1] - 1), dim=1).indices
        hit = ranks < TOP_K
        self.hits += hit.sum()
        self.ndcg += torch.where(hit, 1 / torch.log2(ranks + 2), torch.zeros_like(ranks)).sum()
        self.reciprocal_rank += (1 / (ranks + 1)).sum()
        self.examples += len(ranks)
        self.popularity_sum += popularity.to(scores.device, torch.float64)[top].sum()
        self.recommended += torch.bincount(top.flatten(), minlength=len(self.recommended)).to(
            self.recommended
        )

    def compute(self) -> dict[str, Tensor]:
        examples = self.examples.clamp_min(1)
        catalogue = len(self.recommended) - 1
        return {
            "hr_at_10": self.hits / examples,
            "ndcg_at_10": self.ndcg / examples,
            "mrr": self.reciprocal_rank / examples,
            "coverage_at_10": (self.recommended[1:] > 0).sum() / max(catalogue, 1),
            "mean_popularity_at_10": self.popularity_sum / (examples * min(TOP_K, catalogue)),
        }


def ranking_metrics(
    scores: Tensor, target: Tensor, seen: Tensor | None, popularity: Tensor
) -> dict[str, float]:
    """The metrics of one set of examples in one call (baselines, tests)."""
    metrics = RankingMetrics(scores.shape[1] - 1)
    metrics.update(exclude_seen(scores, seen), target, popularity)
    return {name: float(value) for name, value in metrics.compute().items()}
