"""Segment metrics: how well segments separate later behaviour, how stable and how balanced they are.

- `eta_squared`: the share of a value's variance explained by the segments (between-segment sum of squares
  over the total sum of squares), 0 (segments say nothing) to 1 (each segment is one value).
- `buy_rate_spread`: the largest minus the smallest buying rate across the occupied segments.
- `segment_shares`: each segment's share of the customers (0 for an empty one).
- `segment_metrics`: all of them for one split, as `{"eta2_spend" | "eta2_target", "buy_rate_spread",
  "min_share", "segments", "silhouette"}`.
- `bootstrap_ari`: stability against the sample, the mean adjusted Rand index between a segmentation and
  the same method refitted on bootstrap resamples of the train customers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import adjusted_rand_score, silhouette_score

SILHOUETTE_SAMPLE = 4000
BOOTSTRAP_ROUNDS = 5


def eta_squared(values: np.ndarray, segments: np.ndarray) -> float:
    """Between-segment over total sum of squares of `values (n,)` grouped by `segments (n,)` (0 when the
    values are constant)."""
    values = np.asarray(values, dtype=np.float64)
    segments = np.asarray(segments)
    total = float(((values - values.mean()) ** 2).sum())
    if total <= 0:
        return 0.0
    _, groups = np.unique(segments, return_inverse=True)
    counts = np.bincount(groups)
    means = np.bincount(groups, weights=values) / counts
    between = float((counts * (means - values.mean()) ** 2).sum())
    return between / total


def segment_shares(segments: np.ndarray, k: int) -> np.ndarray:
    """`(k,)` share of the customers in each segment `0 .. k-1`."""
    segments = np.asarray(segments, dtype=np.int64)
    return np.bincount(segments, minlength=k)[:k] / max(len(segments), 1)


def buy_rate_spread(bought: np.ndarray, segments: np.ndarray) -> float:
    """Max minus min over the occupied segments of the share of customers who bought (`bought` 0/1)."""
    bought = np.asarray(bought, dtype=np.float64)
    _, groups = np.unique(np.asarray(segments), return_inverse=True)
    rates = np.bincount(groups, weights=bought) / np.bincount(groups)
    return float(rates.max() - rates.min()) if len(rates) else 0.0


def silhouette(points: np.ndarray, segments: np.ndarray, seed: int = 0) -> float:
    """Silhouette of `segments` in the space of `points (n, d)` (a seeded sample of at most 4000 rows);
    NaN with fewer than two occupied segments."""
    occupied = len(np.unique(segments))
    if occupied < 2 or occupied >= len(segments):
        return float("nan")
    sample = min(SILHOUETTE_SAMPLE, len(segments))
    return float(
        silhouette_score(
            np.asarray(points, dtype=np.float64), segments, sample_size=sample, random_state=seed
        )
    )


def segment_metrics(
    segments: np.ndarray, k: int, points: np.ndarray, target: np.ndarray, spend: bool
) -> dict[str, float]:
    """The metrics of one split's segmentation.

    Args:
        segments: `(n,)` segment of each customer, `0 .. k-1`.
        k: the number of segments (an empty one counts as share 0).
        points: `(n, d)` the space the segments were formed in (the embedding, or the input features for
            baselines), for the silhouette.
        target: `(n,)` holdout spend (`spend`) or the 0/1 target column (tabular data); never used to fit.
        spend: True for transactions data: `eta2_spend` of log(1 + spend) and buying = spend > 0; False:
            `eta2_target` of the target itself, buying = target.
    """
    target = np.asarray(target, dtype=np.float64)
    shares = segment_shares(segments, k)
    results = {
        "eta2_spend" if spend else "eta2_target": eta_squared(
            np.log1p(np.clip(target, 0, None)) if spend else target, segments
        ),
        "buy_rate_spread": buy_rate_spread(target > 0, segments),
        "min_share": float(shares.min()),
        "segments": float((shares > 0).sum()),
        "silhouette": silhouette(points, segments),
    }
    return results


def adjusted_rand(first: np.ndarray, second: np.ndarray) -> float:
    """Adjusted Rand index of two segmentations of the same customers (1 = identical up to renaming)."""
    return float(adjusted_rand_score(first, second))


def bootstrap_ari(
    refit: Callable[[np.ndarray, int], Callable[[np.ndarray], np.ndarray]],
    train: np.ndarray,
    points: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> dict[str, float]:
    """Per split, the mean adjusted Rand index between `reference[split]` (the segments of the fit on all
    train customers) and the segments of `refit(resample, seed)` (a fit on a bootstrap resample of the
    `train (n, d)` rows, returning a predictor of segments) applied to `points[split]`."""
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {split: [] for split in points}
    for round_ in range(int(rounds)):
        predict = refit(train[rng.integers(0, len(train), len(train))], seed + round_)
        for split, values in points.items():
            scores[split].append(adjusted_rand(reference[split], predict(values)))
    return {split: float(np.mean(values)) for split, values in scores.items() if values}
