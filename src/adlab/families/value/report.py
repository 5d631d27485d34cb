"""The customer value report of a tested checkpoint: a decile chart and a Lorenz curve, and the rating rules.

Runs when the selected checkpoint is tested (`adlab-train` and `adlab-eval`), on the test batches it sees,
and writes into the run directory (also W&B images):
- `plots/value_deciles.png`: mean predicted vs mean actual holdout spend per decile of predicted value;
- `plots/lorenz.png`: the share of the test customers' holdout spend held by the best-predicted share of
  them, beside the perfect ranking and random order.

The customer rating itself (predicted spend, probability of buying, decile, tier A/B/C, keyed by customer)
is the module's per-row predictions (`ValueModule.prediction_columns`), which the harness writes as
`ratings.csv` and `predictions.parquet` for the test customers after training, and `adlab-predict` for a
new purchase log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch

from adlab.families.value.metrics import decile_means, lorenz_curve, normalized_gini
from adlab.harness.artifacts import pyplot, save_figure


def rate_customers(
    predicted: np.ndarray, tiers: Sequence[float] = (0.2, 0.5)
) -> tuple[np.ndarray, np.ndarray]:
    """`(decile (n,) int64, tier (n,) str)` of each customer by rank of predicted spend (stable): decile 1
    holds the best tenth; tier A the best `tiers[0]` share, B up to `tiers[1]`, C the rest."""
    order = np.argsort(-np.asarray(predicted, dtype=np.float64), kind="stable")
    n = len(order)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    share = (rank + 1) / max(n, 1)
    tier = np.where(share <= tiers[0], "A", np.where(share <= tiers[1], "B", "C"))
    return rank * 10 // max(n, 1) + 1, tier


def decile_figure(predicted: np.ndarray, actual: np.ndarray) -> Any:
    """Bars of mean predicted and mean actual holdout spend per decile of predicted value (best first)."""
    plt = pyplot()

    mean_predicted, mean_actual = decile_means(predicted, actual)
    deciles = np.arange(1, len(mean_predicted) + 1)
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar(deciles - 0.2, mean_predicted, width=0.4, label="predicted")
    axis.bar(deciles + 0.2, mean_actual, width=0.4, label="actual")
    axis.set(
        xlabel="decile of predicted value (1 = best)",
        ylabel="mean holdout spend per customer",
        title="Predicted vs actual spend by decile (test)",
        xticks=deciles,
    )
    axis.legend()
    return figure


def lorenz_figure(predicted: np.ndarray, actual: np.ndarray) -> Any:
    """Cumulative share of holdout spend against the share of customers, best predicted first."""
    plt = pyplot()

    figure, axis = plt.subplots(figsize=(5, 5))
    customers, captured = lorenz_curve(predicted, actual)
    axis.plot(customers, captured, label=f"model (normalized Gini {normalized_gini(predicted, actual):.3f})")
    customers, captured = lorenz_curve(actual, actual)
    axis.plot(customers, captured, linestyle=":", label="perfect ranking")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    axis.set(
        xlabel="share of customers (best predicted first)",
        ylabel="share of holdout spend",
        title="Lorenz curve (test)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axis.legend(loc="lower right")
    return figure


class ValueReport(L.Callback):
    """Decile chart and Lorenz curve of the tested checkpoint's test customers (see the module docstring)."""

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._predicted: list[torch.Tensor] = []
        self._actual: list[torch.Tensor] = []

    @torch.no_grad()
    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        spend, _ = pl_module.predict_value(batch["features"], batch.get("sequence"))
        self._predicted.append(spend.detach().double().cpu())
        self._actual.append(batch["target"].detach().double().cpu())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self._predicted:
            return
        predicted, actual = torch.cat(self._predicted).numpy(), torch.cat(self._actual).numpy()
        save_figure(trainer, decile_figure(predicted, actual), "value_deciles")
        save_figure(trainer, lorenz_figure(predicted, actual), "lorenz")
