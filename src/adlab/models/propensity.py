"""`PropensityModule`: an MLP propensity-to-buy scorer for customer and behaviour features."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from adlab.metrics.binary import PropensityMetrics
from adlab.nets.mlp import TabularMLP


class PropensityModule(L.LightningModule):
    """Binary propensity scorer trained with (optionally weighted, label-smoothed) binary cross-entropy.

    Args:
        meta: the data module's `meta` (categorical names and cardinalities, numeric names, positive rate).
        hidden_sizes: widths of the MLP's hidden layers.
        dropout: dropout rate.
        embedding_dim: cap on categorical embedding widths.
        positive_weight: weight of the positive class in the loss; "balanced" uses negatives/positives of train.
        label_smoothing: targets become `y * (1 - s) + s / 2`.
        top_fraction: share of customers contacted for `topNN_hits` / `topNN_capture` (0.2 -> top20).
        optimizer: a partial optimizer (`_partial_: true` in config) taking the parameters.
        scheduler: an optional partial LR scheduler taking the optimizer.

    Batches are dicts: `categorical (batch, n_cat) int64`, `numeric (batch, n_num) float32`,
    `target (batch,) float32`. `forward` returns logits `(batch,)`.
    """

    def __init__(
        self,
        meta: dict[str, Any],
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.2,
        embedding_dim: int = 8,
        positive_weight: float | str | None = None,
        label_smoothing: float = 0.0,
        top_fraction: float = 0.2,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        self.scheduler_factory = scheduler
        self.net = TabularMLP(
            meta["cardinalities"], len(meta["numeric"]), hidden_sizes, dropout, embedding_dim
        )
        if positive_weight == "balanced":
            rate = meta["positive_rate"]
            positive_weight = (1 - rate) / max(rate, 1e-6)
        self.register_buffer(
            "positive_weight",
            torch.tensor(float(positive_weight)) if positive_weight else None,
            persistent=False,
        )
        self.label_smoothing = label_smoothing
        self.val_metrics = PropensityMetrics(top_fraction)
        self.test_metrics = PropensityMetrics(top_fraction)
        self._train_loss_sum = torch.zeros(())
        self._train_batches = 0

    def forward(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        return self.net(categorical, numeric).squeeze(-1)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.positive_weight)

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        loss = self.loss(self(batch["categorical"], batch["numeric"]), batch["target"])
        # summed here and logged once per epoch: per-step logging would dominate a tiny model's step time
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach()
        self._train_batches += 1
        return loss

    def on_train_epoch_end(self) -> None:
        if self._train_batches:
            self.log("train/loss", self._train_loss_sum / self._train_batches, sync_dist=True)
        self._train_loss_sum, self._train_batches = torch.zeros(()), 0

    def _evaluate(self, batch: dict[str, Tensor], metrics: PropensityMetrics) -> None:
        logits = self(batch["categorical"], batch["numeric"])
        metrics.update(torch.sigmoid(logits), batch["target"])

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def _log_metrics(self, stage: str, metrics: PropensityMetrics) -> None:
        self.log_dict({f"{stage}/{name}": value for name, value in metrics.compute().items()})
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def predict_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        """Purchase probabilities `(batch,)`."""
        return torch.sigmoid(self(batch["categorical"], batch["numeric"]))

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"},
        }
