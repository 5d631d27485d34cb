"""Segment baselines on the identical customers and features, in the same run, scored like the model.

- `KMeansBaseline`: scikit-learn k-means with the model's k on the model's input features (numeric
  columns, categorical columns one-hot).
- `GaussianMixtureBaseline`: scikit-learn's Gaussian mixture with the same k on the same features.
- `RFMCellsBaseline` (transactions data): recency (days since the last purchase), frequency (repeat
  purchases) and monetary value (calibration spend), each cut at the train customers' terciles: 27 cells
  (fewer where ties merge edges; the metrics count the occupied cells).

Each fits on the train customers only and reports `val/...` and `test/...` as the model does
(`adlab.families.segments.metrics.segment_metrics`; the silhouette in the input feature space), and
`ari_bootstrap`: the same baseline refitted on bootstrap resamples of the train customers against its fit.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from adlab.data.features import DataMeta, TransactionsMeta
from adlab.errors import AdlabError
from adlab.families.segments.metrics import bootstrap_ari, segment_metrics

log = logging.getLogger(__name__)
RFM = ("days_since_last", "frequency", "total_spend")


def meta_of(datamodule: Any) -> DataMeta:
    meta = datamodule.meta
    return DataMeta.from_dict(meta) if isinstance(meta, dict) else meta


def feature_matrix(tensors: dict[str, Any], cardinalities: list[int] | None = None) -> np.ndarray:
    """The model's inputs as one float64 matrix: transactions `features`, or tabular `numeric` with each
    categorical column one-hot (`cardinalities` wide)."""
    if "features" in tensors:
        return tensors["features"].double().numpy()
    parts = [tensors["numeric"].double().numpy()]
    categorical = tensors.get("categorical")
    if categorical is not None and cardinalities:
        codes = categorical.numpy()
        parts += [np.eye(c)[codes[:, i]] for i, c in enumerate(cardinalities)]
    return np.concatenate(parts, axis=1)


class SegmentBaseline:
    """Fit on the train customers' features; report the segment metrics on val and test."""

    def __init__(self, k: int = 8, seed: int = 0):
        if int(k) < 2:
            raise AdlabError(f"k={k}: expected at least 2 segments")
        self.k, self.seed = int(k), int(seed)

    def fit(self, features: np.ndarray) -> None:
        raise NotImplementedError

    def predict(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, datamodule: Any) -> dict[str, float]:
        meta = meta_of(datamodule)
        spend = isinstance(meta, TransactionsMeta)
        cardinalities = None if spend else list(getattr(meta, "cardinalities", []))
        train = feature_matrix(datamodule.tensors["train"], cardinalities)
        if self.k > len(train):
            raise AdlabError(f"k={self.k}: expected at most the {len(train)} train customers")
        self.fit(train)
        results, points, segments = {}, {}, {}
        for stage in ("val", "test"):
            tensors = datamodule.tensors[stage]
            points[stage] = feature_matrix(tensors, cardinalities)
            segments[stage] = self.predict(points[stage])
            scores = segment_metrics(
                segments[stage], self.k, points[stage], tensors["target"].double().numpy(), spend
            )
            results.update({f"{stage}/{name}": value for name, value in scores.items()})
        stability = bootstrap_ari(self._refit, train, points, segments, seed=self.seed)
        results.update({f"{stage}/ari_bootstrap": value for stage, value in stability.items()})
        return results

    def _refit(self, train: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        """A copy of this baseline fitted on `train` (a bootstrap resample); its `predict`."""
        twin = copy.deepcopy(self)
        twin.fit(train)
        return twin.predict


class KMeansBaseline(SegmentBaseline):
    """k-means (scikit-learn, `restarts` seeded inits) on the model's input features."""

    def __init__(self, k: int = 8, seed: int = 0, restarts: int = 10):
        super().__init__(k, seed)
        self.model = KMeans(self.k, n_init=int(restarts), random_state=self.seed)

    def fit(self, features: np.ndarray) -> None:
        self.model.fit(features)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(features)


class GaussianMixtureBaseline(SegmentBaseline):
    """A Gaussian mixture (scikit-learn) with `covariance` covariances on the model's input features."""

    def __init__(self, k: int = 8, seed: int = 0, covariance: str = "diag", restarts: int = 3):
        super().__init__(k, seed)
        self.model = GaussianMixture(
            self.k, covariance_type=covariance, n_init=int(restarts), random_state=self.seed, reg_covar=1e-4
        )

    def fit(self, features: np.ndarray) -> None:
        self.model.fit(features)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(features)


class RFMCellsBaseline(SegmentBaseline):
    """Recency x frequency x monetary tercile cells (transactions data; skipped with a logged reason on
    other data). The edges are the train customers' terciles of each feature."""

    def __init__(self, k: int = 27, seed: int = 0, bins: int = 3):
        self.bins, self.seed = int(bins), int(seed)
        self.k = self.bins**3

    def evaluate(self, datamodule: Any) -> dict[str, float]:
        meta = meta_of(datamodule)
        if not isinstance(meta, TransactionsMeta):
            log.warning(
                "baselines: RFM cells skipped: they need transactions data (recency, frequency, spend)"
            )
            return {}
        self.columns = [meta.features.index(name) for name in RFM]
        return super().evaluate(datamodule)

    def fit(self, features: np.ndarray) -> None:
        quantiles = np.linspace(0, 1, self.bins + 1)[1:-1]
        self.edges = [np.unique(np.quantile(features[:, c], quantiles)) for c in self.columns]
        cells = self._cells(features)
        # occupied train cells, renumbered 0 .. m-1; a val/test customer in an unseen cell gets its own label
        self.occupied = {cell: index for index, cell in enumerate(np.unique(cells))}
        self.k = len(self.occupied)

    def _cells(self, features: np.ndarray) -> np.ndarray:
        cells = np.zeros(len(features), dtype=np.int64)
        for column, edges in zip(self.columns, self.edges, strict=True):
            cells = cells * (self.bins + 1) + np.searchsorted(edges, features[:, column], side="right")
        return cells

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray([self.occupied.get(cell, self.k) for cell in self._cells(features)], dtype=np.int64)
