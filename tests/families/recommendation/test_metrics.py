"""Full-catalogue ranking metrics and the baselines, against hand-computed values and torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

from adlab.data.features import InteractionsFeatures, InteractionsMeta
from adlab.families.recommendation.baselines import ItemKNNBaseline, PopularityBaseline
from adlab.families.recommendation.metrics import exclude_seen, ranking_metrics, target_ranks


def test_metrics_match_hand_computed_values():
    # 12 items (+ padding); three examples whose targets land at ranks 0, 3 and 11 (0-based)
    scores = torch.arange(13, 0, -1, dtype=torch.float32).repeat(3, 1)  # item 1 best, item 12 worst
    seen = torch.tensor([[0, 0], [2, 3], [0, 0]])  # the second row's items 2 and 3 are excluded
    target = torch.tensor([1, 6, 12])
    assert target_ranks(exclude_seen(scores, seen), target).tolist() == [0, 3, 11]
    popularity = torch.arange(13, dtype=torch.float64)  # item i was seen i times
    metrics = ranking_metrics(scores, target, seen, popularity)
    assert metrics["hr_at_10"] == pytest.approx(2 / 3)
    assert metrics["ndcg_at_10"] == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 12) / 3)
    # top 10: items 1..10, and 1, 4..12 for the second row: every item is recommended at least once
    assert metrics["coverage_at_10"] == pytest.approx(1.0)
    assert metrics["mean_popularity_at_10"] == pytest.approx((55 + 55 + (1 + sum(range(4, 13)))) / 30)


def test_ties_count_against_the_model():
    scores = torch.zeros(2, 6)
    assert target_ranks(exclude_seen(scores, None), torch.tensor([1, 5])).tolist() == [4, 4]


def test_metrics_agree_with_torchmetrics_retrieval_metrics():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 31, generator=generator)
    target = torch.randint(1, 31, (50,), generator=generator)
    ours = ranking_metrics(scores, target, None, torch.ones(31))
    preds = scores[:, 1:].flatten() + 10  # torchmetrics' MRR ignores a relevant item scored <= 0
    relevant = torch.nn.functional.one_hot(target - 1, 30).bool().flatten()
    indexes = torch.arange(50).repeat_interleave(30)
    assert ours["ndcg_at_10"] == pytest.approx(
        float(RetrievalNormalizedDCG(top_k=10)(preds, relevant, indexes)), abs=1e-6
    )
    assert ours["hr_at_10"] == pytest.approx(
        float(RetrievalHitRate(top_k=10)(preds, relevant, indexes)), abs=1e-6
    )
    assert ours["mrr"] == pytest.approx(float(RetrievalMRR()(preds, relevant, indexes)), abs=1e-6)


class _Data:
    """What a baseline reads of a data module: meta, features (catalogue) and tensors."""

    def __init__(self, histories: list[list[int]], items: int, val: list[tuple[list[int], int]]):
        offsets = np.concatenate([[0], np.cumsum([len(h) for h in histories])]).tolist()
        popularity = np.bincount(np.concatenate(histories), minlength=items + 1)[1:].tolist()
        self.meta = InteractionsMeta(items=items, users=len(histories))
        self.features = InteractionsFeatures(
            item_ids=[str(i) for i in range(1, items + 1)],
            item_titles=[],
            user_ids=[str(u) for u in range(1, len(histories) + 1)],
            item_codes=[[] for _ in range(items)],
            user_codes=[[] for _ in histories],
            vocabularies={},
            popularity=popularity,
            history_offsets=offsets,
            history_items=[i for h in histories for i in h],
        )
        width = max(len(s) for s, _ in val)
        seen = torch.tensor([s + [0] * (width - len(s)) for s, _ in val])
        stage = {"seen": seen, "target": torch.tensor([t for _, t in val])}
        self.tensors = {"val": stage, "test": stage}


def test_popularity_ranks_the_most_seen_items_the_user_does_not_have():
    data = _Data([[1, 2], [1, 3], [1, 2, 4]], 5, [([1], 2), ([2], 3)])
    # items by popularity: 1 (3), 2 (2), 3 and 4 (1), 5 (0); row 1 excludes 1 -> 2 first; row 2 -> 1, 3
    results = PopularityBaseline().evaluate(data)
    assert results["val/mrr"] == pytest.approx((1 + 1 / 3) / 2)  # 3 ties with 4: counted against it


def test_item_knn_scores_by_cosine_similarity_to_the_history():
    # users: {1, 2}, {1, 2}, {3, 4}: item 2 is most like item 1, item 4 like item 3
    data = _Data([[1, 2], [1, 2], [3, 4]], 4, [([1], 2), ([3], 4)])
    baseline = ItemKNNBaseline(neighbours=5, shrink=0.0)
    results = baseline.evaluate(data)
    assert results["val/hr_at_10"] == 1.0 and results["val/mrr"] == 1.0
    assert baseline.similarity[1, 2] == pytest.approx(1.0) and baseline.similarity[1, 3] == 0
