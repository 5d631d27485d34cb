"""Customer value metrics: how well predicted spend ranks customers and forecasts the period's total.

Every function takes `predicted (n,)` spend, `actual (n,)` holdout spend (>= 0) and, for AUROC, a score of
"buys again" (a probability, or the predicted spend where a model has none). Ties in the predictions are
handled so that a figure does not depend on the order of the rows: the Lorenz curve joins tied customers
by a straight line (the mean over their orderings); deciles are cut by rank with a stable sort.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.functional.regression import spearman_corrcoef
from torchmetrics.utilities import dim_zero_cat

METRICS = ("normalized_gini", "spearman", "top10_capture", "decile_mape", "total_spend_error", "auroc")


def lorenz_curve(predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of customers (best predicted first) vs share of all actual spend they hold.

    Tied predictions form one step whose customers are joined by a straight line. Returns
    `(customers (k + 1,), spend (k + 1,))` from (0, 0) to (1, 1), k = distinct predicted values.
    """
    predicted, actual = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    values, inverse = np.unique(-predicted, return_inverse=True)  # ascending -predicted: best first
    counts = np.bincount(inverse, minlength=len(values)).astype(np.float64)
    spend = np.bincount(inverse, weights=actual, minlength=len(values))
    customers = np.concatenate([[0.0], np.cumsum(counts)]) / max(len(actual), 1)
    total = spend.sum()
    captured = np.concatenate([[0.0], np.cumsum(spend)]) / (total if total > 0 else 1.0)
    return customers, captured


def gini(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Gini of the Lorenz curve of `actual` ranked by `predicted`: twice the area between it and the diagonal."""
    customers, captured = lorenz_curve(predicted, actual)
    area = float(np.sum(np.diff(customers) * (captured[1:] + captured[:-1]) / 2))
    return 2 * area - 1


def normalized_gini(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Gini of the predictions over the Gini of a perfect ranking (1 = ranks like the truth, 0 = random)."""
    best = gini(actual, actual)
    return gini(predicted, actual) / best if best > 0 else float("nan")


def top_capture(predicted: np.ndarray, actual: np.ndarray, fraction: float = 0.1) -> float:
    """Share of all actual spend held by the `ceil(fraction * n)` customers predicted best (stable sort)."""
    actual = np.asarray(actual, dtype=np.float64)
    order = np.argsort(-np.asarray(predicted, dtype=np.float64), kind="stable")
    total = actual.sum()
    return (
        float(actual[order[: math.ceil(fraction * len(actual))]].sum() / total) if total > 0 else float("nan")
    )


def decile_means(predicted: np.ndarray, actual: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted and mean actual spend per decile of predicted value, best decile first `(bins,)`."""
    predicted, actual = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    order = np.argsort(-predicted, kind="stable")
    parts = np.array_split(order, bins)
    return (
        np.array([predicted[p].mean() if len(p) else np.nan for p in parts]),
        np.array([actual[p].mean() if len(p) else np.nan for p in parts]),
    )


def decile_mape(predicted: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Mean over deciles of predicted value of |mean predicted - mean actual| / mean actual (Wang, Liu &
    Miao 2019); deciles whose customers spent nothing have no relative error and are left out."""
    mean_predicted, mean_actual = decile_means(predicted, actual, bins)
    kept = mean_actual > 0
    if not kept.any():
        return float("nan")
    return float(np.mean(np.abs(mean_predicted[kept] - mean_actual[kept]) / mean_actual[kept]))


def total_spend_error(predicted: np.ndarray, actual: np.ndarray) -> float:
    """(predicted total - actual total) / actual total: the error of the period's sales forecast (signed)."""
    total = float(np.sum(actual))
    return (float(np.sum(predicted)) - total) / total if total > 0 else float("nan")


def value_metrics(
    predicted: np.ndarray, actual: np.ndarray, buy_score: np.ndarray | None = None
) -> dict[str, float]:
    """Every metric of `METRICS`; `buy_score` (default: the predicted spend) ranks "buys again" for AUROC."""
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    score = predicted if buy_score is None else np.asarray(buy_score, dtype=np.float64)
    bought = torch.as_tensor(actual > 0, dtype=torch.long)
    both_classes = 0 < int(bought.sum()) < len(bought)
    constant = len(actual) < 2 or np.ptp(predicted) == 0 or np.ptp(actual) == 0
    return {
        "normalized_gini": normalized_gini(predicted, actual),
        "spearman": float("nan")
        if constant
        else float(spearman_corrcoef(torch.as_tensor(predicted), torch.as_tensor(actual))),
        "top10_capture": top_capture(predicted, actual, 0.1),
        "decile_mape": decile_mape(predicted, actual),
        "total_spend_error": total_spend_error(predicted, actual),
        "auroc": float(binary_auroc(torch.as_tensor(score), bought)) if both_classes else float("nan"),
    }


class ValueMetrics(Metric):
    """Collects predicted spend, probability of buying and actual spend over an epoch; computes `METRICS`.

    Every metric ranks or sums over the whole split, so the state is the predictions themselves
    (concatenated across processes).
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("predicted", default=[], dist_reduce_fx="cat")
        self.add_state("probability", default=[], dist_reduce_fx="cat")
        self.add_state("actual", default=[], dist_reduce_fx="cat")

    def update(self, predicted: Tensor, probability: Tensor, actual: Tensor) -> None:
        """`predicted (batch,)` spend, `probability (batch,)` of buying, `actual (batch,)` holdout spend."""
        self.predicted.append(predicted.detach().flatten().double())
        self.probability.append(probability.detach().flatten().double())
        self.actual.append(actual.detach().flatten().double())

    def compute(self) -> dict[str, Tensor]:
        predicted = dim_zero_cat(self.predicted).cpu().numpy()
        probability = dim_zero_cat(self.probability).cpu().numpy()
        actual = dim_zero_cat(self.actual).cpu().numpy()
        values = value_metrics(predicted, actual, probability)
        return {name: torch.tensor(value, dtype=torch.float32) for name, value in values.items()}
