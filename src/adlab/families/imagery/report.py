"""Test-set plots of an image classifier: a confusion matrix and a grid of misclassified images."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from adlab.harness.artifacts import save_figure, save_table


class ImageryPlots(L.Callback):
    """Collect test predictions and write `plots/confusion_matrix.png`, `plots/misclassified.png` and
    `confusion_matrix.csv` (each also logged to W&B by `adlab.harness.artifacts`).

    Works with any module whose `test_step` returns `{"predictions": (batch,) int64}` and which has
    `classes` (names), `display(images) -> uint8 images` and batches holding `image` and `target`.

    Args:
        misclassified_shown: how many misclassified test images the grid shows.
    """

    def __init__(self, misclassified_shown: int = 36):
        self.misclassified_shown = misclassified_shown
        self.confusion: Tensor | None = None
        self.wrong: list[tuple[Tensor, int, int]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        classes = len(pl_module.classes)
        self.confusion = torch.zeros(classes, classes, dtype=torch.long, device=pl_module.device)
        self.wrong = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: dict[str, Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        predictions, targets = outputs["predictions"], batch["target"]
        classes = len(pl_module.classes)
        self.confusion += torch.bincount(targets * classes + predictions, minlength=classes * classes).view(
            classes, classes
        )
        missing = self.misclassified_shown - len(self.wrong)
        if missing > 0:
            wrong = torch.nonzero(predictions != targets).flatten()[:missing]
            if len(wrong):
                images = pl_module.display(batch["image"][wrong]).cpu()
                for image, target, prediction in zip(
                    images, targets[wrong].tolist(), predictions[wrong].tolist(), strict=True
                ):
                    self.wrong.append((image, target, prediction))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        confusion = trainer.strategy.reduce(self.confusion, reduce_op="sum").cpu()
        if not trainer.is_global_zero:
            return
        classes = list(pl_module.classes)
        save_figure(trainer, confusion_figure(confusion, classes), "confusion_matrix")
        rows = [
            {"true": name, **{predicted: int(count) for predicted, count in zip(classes, row, strict=True)}}
            for name, row in zip(classes, confusion.tolist(), strict=True)
        ]
        save_table(trainer, rows, "confusion_matrix")
        if self.wrong:
            save_figure(trainer, misclassified_figure(self.wrong, classes), "misclassified")


def confusion_figure(confusion: Tensor, classes: list[str]) -> Any:
    """A confusion matrix (rows: true class, columns: predicted), coloured by row share, counts written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confusion.numpy()
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    size = max(4.0, 0.55 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = counts.trace() / max(counts.sum(), 1)
    axes.set_title(f"test confusion matrix (accuracy {accuracy:.4f})")
    if len(classes) <= 30:
        for row in range(len(classes)):
            for column in range(len(classes)):
                colour = "white" if shares[row, column] > 0.5 else "black"
                axes.text(
                    column, row, str(counts[row, column]), ha="center", va="center", fontsize=7, color=colour
                )
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    return figure


def misclassified_figure(wrong: list[tuple[Tensor, int, int]], classes: list[str]) -> Any:
    """A grid of `(c, h, w)` uint8 images titled "true -> predicted"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(6, len(wrong))
    rows = -(-len(wrong) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (image, target, prediction) in zip(axes.flat, wrong, strict=False):
        picture = image.permute(1, 2, 0).numpy()
        if picture.shape[2] == 1:
            axis.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            axis.imshow(picture)
        axis.set_title(f"{classes[target]}\n-> {classes[prediction]}", fontsize=8)
    figure.suptitle("misclassified test images (true -> predicted)")
    figure.tight_layout()
    return figure
