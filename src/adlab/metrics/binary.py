"""The metric set of a binary propensity scorer, shared by the neural model and its baselines."""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision, BinaryCalibrationError

from adlab.metrics.ranking import TopFractionCapture, TopFractionHits


class LogLoss(MeanMetric):
    """Mean binary cross-entropy of predicted probabilities (lower is better)."""

    higher_is_better = False

    def update(self, probabilities: Tensor, targets: Tensor) -> None:  # type: ignore[override]
        p = probabilities.float().clamp(1e-7, 1 - 1e-7)
        super().update(-(targets * p.log() + (1 - targets) * (1 - p).log()))


class PropensityMetrics(nn.Module):
    """AUROC, average precision, log loss, Brier score, ECE, top-k hits and capture.

    `update(probabilities (n,) float, targets (n,) 0/1)`; `compute()` returns name -> scalar tensor.
    Built on torchmetrics, so values are synchronised across processes under DDP (`sync=False` for
    predictions that one process holds in full, such as a baseline's).
    """

    def __init__(self, top_fraction: float = 0.2, sync: bool = True):
        super().__init__()
        percent = round(100 * top_fraction)
        options = {"sync_on_compute": sync}
        self.metrics = nn.ModuleDict(
            {
                "auroc": BinaryAUROC(**options),
                "average_precision": BinaryAveragePrecision(**options),
                "log_loss": LogLoss(**options),
                "brier": MeanSquaredError(**options),
                "ece": BinaryCalibrationError(n_bins=10, **options),
                f"top{percent}_hits": TopFractionHits(top_fraction, **options),
                f"top{percent}_capture": TopFractionCapture(top_fraction, **options),
            }
        )

    def update(self, probabilities: Tensor, targets: Tensor) -> None:
        probabilities, targets = probabilities.detach().float(), targets.detach()
        for metric in self.metrics.values():
            integer = isinstance(metric, (BinaryAUROC, BinaryAveragePrecision, BinaryCalibrationError))
            metric.update(probabilities, targets.long() if integer else targets.float())

    def compute(self) -> dict[str, Tensor]:
        return {name: metric.compute() for name, metric in self.metrics.items()}

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()


def score_probabilities(
    probabilities: Tensor, targets: Tensor, top_fraction: float = 0.2
) -> dict[str, float]:
    """All propensity metrics of one set of predictions, as plain floats."""
    metrics = PropensityMetrics(top_fraction, sync=False)
    metrics.update(probabilities, targets)
    return {name: float(value) for name, value in metrics.compute().items()}
