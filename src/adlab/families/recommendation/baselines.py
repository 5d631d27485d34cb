"""Recommendation baselines, fitted on the train interactions of the run's own split and ranked like the
model (full catalogue, each user's earlier items excluded; `adlab.families.recommendation.metrics`).

- `PopularityBaseline`: the items with the most train interactions.
- `ItemKNNBaseline`: item-to-item cosine similarity of the train user-item matrix (scipy sparse); a user's
  score for an item is the summed similarity to the items they had.
- `ImplicitALSBaseline`: alternating least squares from the `implicit` library, a peer library and not an
  adlab dependency: skipped with one logged reason where it is not installed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from adlab.data.features import DataMeta, InteractionsFeatures, InteractionsMeta
from adlab.errors import AdlabError
from adlab.families.recommendation.metrics import RankingMetrics, exclude_seen

log = logging.getLogger(__name__)


def train_matrix(catalogue: InteractionsFeatures) -> sp.csr_matrix:
    """`(users + 1, items + 1)` binary user-item matrix of the train interactions (row/column 0: padding)."""
    offsets = np.asarray(catalogue.history_offsets)
    users = np.repeat(np.arange(1, len(offsets)), np.diff(offsets))
    items = np.asarray(catalogue.history_items, dtype=np.int64)
    shape = (len(offsets), len(catalogue.item_ids) + 1)
    matrix = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (users, items)), shape=shape)
    matrix.data[:] = 1.0  # a repeated pair counts once
    return matrix


def seen_matrix(seen: torch.Tensor, items: int) -> sp.csr_matrix:
    """`(rows, items + 1)` binary matrix of each row's `seen (rows, S)` items (padding 0 dropped)."""
    rows, columns = np.nonzero(seen.numpy() > 0)
    values = seen.numpy()[rows, columns]
    return sp.csr_matrix(
        (np.ones(len(values), dtype=np.float32), (rows, values)), shape=(len(seen), items + 1)
    )


class RecommendationBaseline:
    """Fit on the train interactions; report the ranking metrics on val and test (`baseline/<name>/...`)."""

    batch_rows = 1024

    def fit(self, catalogue: InteractionsFeatures, meta: InteractionsMeta) -> bool:
        """Fit on the train interactions; False (after logging why) when this baseline cannot run."""
        return True

    def scores(self, tensors: dict[str, torch.Tensor], rows: slice) -> torch.Tensor:
        """Scores `(rows, items + 1)` float32 of a slice of a split's examples."""
        raise NotImplementedError

    def evaluate(self, datamodule: Any) -> dict[str, float]:
        """Fit on train; `{"val/<metric>": ..., "test/<metric>": ...}`, or `{}` when skipped."""
        meta = datamodule.meta
        meta = DataMeta.from_dict(meta) if isinstance(meta, dict) else meta
        meta.require(InteractionsMeta, "the recommendation baselines")
        catalogue = datamodule.features
        if not isinstance(catalogue, InteractionsFeatures):
            raise AdlabError("the recommendation baselines need interactions data (InteractionsSource)")
        if not self.fit(catalogue, meta):
            return {}
        popularity = torch.tensor([0, *catalogue.popularity], dtype=torch.float64)
        results = {}
        for stage in ("val", "test"):
            tensors = datamodule.tensors[stage]
            metrics = RankingMetrics(meta.items)
            for start in range(0, len(tensors["target"]), self.batch_rows):
                part = slice(start, start + self.batch_rows)
                scores = exclude_seen(self.scores(tensors, part), tensors["seen"][part])
                metrics.update(scores, tensors["target"][part], popularity)
            results.update({f"{stage}/{name}": float(value) for name, value in metrics.compute().items()})
        return results


class PopularityBaseline(RecommendationBaseline):
    """Everyone gets the items with the most train interactions (that they do not have yet)."""

    def fit(self, catalogue: InteractionsFeatures, meta: InteractionsMeta) -> bool:
        self.popularity = torch.tensor([0, *catalogue.popularity], dtype=torch.float32)
        return True

    def scores(self, tensors: dict[str, torch.Tensor], rows: slice) -> torch.Tensor:
        return self.popularity.expand(len(tensors["target"][rows]), -1)


class ItemKNNBaseline(RecommendationBaseline):
    """Item-based k-nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004).

    Similarity of items i, j: `|U_i & U_j| / (sqrt(|U_i| |U_j|) + shrink)` over the train users; each item
    keeps its `neighbours` most similar items. A user's score for an item: the summed similarity of the
    items they had before the example's target (its `seen` items) to it.

    Args:
        neighbours: similar items kept per item.
        shrink: added to the cosine's denominator (damps similarities of rarely seen items).
    """

    def __init__(self, neighbours: int = 100, shrink: float = 10.0):
        if int(neighbours) < 1:
            raise AdlabError(f"baselines.item_knn.neighbours={neighbours}: expected at least 1")
        self.neighbours = int(neighbours)
        self.shrink = float(shrink)
        self.similarity: sp.csr_matrix | None = None

    def fit(self, catalogue: InteractionsFeatures, meta: InteractionsMeta) -> bool:
        matrix = train_matrix(catalogue).tocsc()
        co = (matrix.T @ matrix).tocsr().astype(np.float32)
        norms = np.sqrt(co.diagonal())
        co.setdiag(0)
        co.eliminate_zeros()
        rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
        co.data /= norms[rows] * norms[co.indices] + self.shrink
        self.similarity = top_per_row(co, self.neighbours)
        return True

    def scores(self, tensors: dict[str, torch.Tensor], rows: slice) -> torch.Tensor:
        seen = seen_matrix(tensors["seen"][rows], self.similarity.shape[0] - 1)
        return torch.from_numpy(np.asarray((seen @ self.similarity).todense(), dtype=np.float32))


def top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the `k` largest entries of each row of a CSR matrix."""
    matrix = matrix.tocsr()
    keep = np.zeros(len(matrix.data), dtype=bool)
    for row in range(matrix.shape[0]):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        if stop - start <= k:
            keep[start:stop] = True
        else:
            keep[start + np.argpartition(-matrix.data[start:stop], k - 1)[:k]] = True
    pruned = matrix.copy()
    pruned.data = np.where(keep, pruned.data, 0)
    pruned.eliminate_zeros()
    return pruned


class ImplicitALSBaseline(RecommendationBaseline):
    """Matrix factorisation by alternating least squares (Hu, Koren & Volinsky 2008) from `implicit`.

    A user's vector is recomputed from the example's `seen` items (`recalculate_user`), so val and test
    use exactly the history the models see.

    Args:
        factors: latent dimensions.
        regularization: L2 penalty.
        iterations: ALS sweeps.
        alpha: confidence weight of an interaction.
        seed: random state.
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 1.0,
        seed: int = 0,
    ):
        self.options = {
            "factors": factors,
            "regularization": regularization,
            "iterations": iterations,
            "alpha": alpha,
            "random_state": seed,
        }
        self.model: Any = None

    def fit(self, catalogue: InteractionsFeatures, meta: InteractionsMeta) -> bool:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError:
            log.warning(
                "baselines: implicit ALS skipped: the implicit library is not installed (a peer library: "
                "`make peers` builds .venv-peers with it)"
            )
            return False
        from threadpoolctl import threadpool_limits

        # implicit runs its own threads; a BLAS thread pool under them only contends (its own advice)
        with threadpool_limits(1, "blas"):
            self.model = AlternatingLeastSquares(**self.options, calculate_training_loss=False)
            self.model.fit(train_matrix(catalogue), show_progress=False)
        return True

    def scores(self, tensors: dict[str, torch.Tensor], rows: slice) -> torch.Tensor:
        seen = seen_matrix(tensors["seen"][rows], self.model.item_factors.shape[0] - 1)
        users = self.model.recalculate_user(np.arange(seen.shape[0]), seen)
        return torch.from_numpy(np.asarray(users @ self.model.item_factors.T, dtype=np.float32))
