"""Post-hoc calibration of binary scores, fitted on the validation split: temperature or isotonic.

A propensity scorer trained with class weights or label smoothing ranks well but its probabilities
are off; a campaign that budgets on expected buyers needs them right. Both calibrators are monotone,
so the ranking (AUROC, top-k hits) is unchanged up to ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def log_loss(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities `(n,)` against 0/1 targets `(n,)`."""
    p = np.clip(np.asarray(probabilities, dtype=float), 1e-7, 1 - 1e-7)
    y = np.asarray(targets, dtype=float)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


@dataclass
class TemperatureScaling:
    """p = sigmoid(logit / T), with T > 0 chosen to minimise the log loss on the fitting data."""

    temperature: float = 1.0

    def fit(self, logits: np.ndarray, targets: np.ndarray) -> TemperatureScaling:
        logits = np.asarray(logits, dtype=float)

        def loss(log_temperature: float) -> float:
            return log_loss(_sigmoid(logits / np.exp(log_temperature)), targets)

        # search log T in a wide bracket: T in [0.02, 50]
        self.temperature = float(np.exp(minimize_scalar(loss, bounds=(-4.0, 4.0), method="bounded").x))
        return self

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(np.asarray(logits, dtype=float) / self.temperature)


class IsotonicCalibration:
    """A non-decreasing step function from scores to probabilities (clipped outside the fitted range)."""

    def __init__(self) -> None:
        self.model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")

    def fit(self, logits: np.ndarray, targets: np.ndarray) -> IsotonicCalibration:
        self.model.fit(np.asarray(logits, dtype=float), np.asarray(targets, dtype=float))
        return self

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(logits, dtype=float))


def fit_calibrator(
    method: str, logits: np.ndarray, targets: np.ndarray
) -> TemperatureScaling | IsotonicCalibration:
    """Fit "temperature" or "isotonic" on `logits (n,)` and 0/1 `targets (n,)`; returns logits -> probabilities."""
    if method == "temperature":
        return TemperatureScaling().fit(logits, targets)
    if method == "isotonic":
        return IsotonicCalibration().fit(logits, targets)
    raise ValueError(f"calibration={method!r}: expected 'temperature' or 'isotonic'")


def reliability_bins(
    probabilities: np.ndarray, targets: np.ndarray, bins: int = 10, strategy: str = "quantile"
) -> list[dict[str, float]]:
    """Mean predicted probability, observed buyer rate and count per bin (non-empty bins only).

    `strategy="quantile"` makes bins of equal customer counts (readable when buyers are rare and most
    scores sit near the base rate); `"uniform"` makes equal-width probability bins, as ECE uses.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    targets = np.asarray(targets, dtype=float)
    if strategy == "quantile":
        order = np.argsort(probabilities, kind="stable")
        index = np.empty(len(order), dtype=int)
        index[order] = np.arange(len(order)) * bins // max(len(order), 1)
    elif strategy == "uniform":
        index = np.minimum((probabilities * bins).astype(int), bins - 1)
    else:
        raise ValueError(f"strategy={strategy!r}: expected 'quantile' or 'uniform'")
    rows = []
    for position in range(bins):
        members = index == position
        if members.any():
            rows.append(
                {
                    "predicted": float(probabilities[members].mean()),
                    "observed": float(targets[members].mean()),
                    "count": int(members.sum()),
                }
            )
    return rows
